/**
 * Secrets out of log lines and error messages: a connection URL (REDIS_URL, STORE_URL) is only
 * ever shown with its password replaced by `***`. Pure, and light enough for config.ts.
 */

/** Query parameters that carry a secret in some drivers' URLs (`?password=...`). */
const SECRET_PARAM = /pass|secret|token|key/i;

/** The URL without its password, for log lines. Pure. */
export function redactedUrl(url: string, fallback = 'the configured Redis URL'): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const name of [...u.searchParams.keys()]) if (SECRET_PARAM.test(name)) u.searchParams.set(name, '***');
    return u.toString();
  } catch {
    return fallback;
  }
}

/** Every URL with a password or a secret query parameter in `text`, redacted (for free-form error lines). Pure. */
export function redactUrls(text: string): string {
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s'"<>()]+/gi, (url) => redactedUrl(url, '<a URL>'));
}

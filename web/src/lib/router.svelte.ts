// Client-side routing over the History API. The node answers every
// non-API path with index.html (crates/node/src/api/web.rs), so a deep
// link such as /explorer/block/7 loads the app, which then picks the page.

export const route = $state({ path: location.pathname, query: location.search });

/** Goes to an in-app path without a page load. */
export function navigate(to: string, replace = false) {
  const url = new URL(to, location.origin);
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route.path = url.pathname;
  route.query = url.search;
  window.scrollTo(0, 0);
}

/** Matches `path` against a pattern like `/explorer/block/:height`. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split('/').filter(Boolean);
  const s = path.split('/').filter(Boolean);
  if (p.length !== s.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) out[p[i].slice(1)] = decodeURIComponent(s[i]);
    else if (p[i] !== s[i]) return null;
  }
  return out;
}

/** Same-origin link clicks become in-app navigation (modifier clicks still open tabs). */
export function installLinkHandler() {
  addEventListener('popstate', () => {
    route.path = location.pathname;
    route.query = location.search;
  });
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest?.('a');
    if (!a || a.target || a.hasAttribute('download')) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/v1/')) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
  });
}

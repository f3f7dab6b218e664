// In-app navigation without a reload; the shell (app.js) listens and renders the new route.

/** Goes to an in-app path. */
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  window.dispatchEvent(new Event('tidings:navigate'));
}

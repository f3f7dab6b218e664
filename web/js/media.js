// Media: uploads from the composer, this server's images shown through the session's token
// (an <img> cannot send one, so the bytes are fetched and shown as a blob: URL), and blurhash
// placeholders painted while they load.

import { session, ApiError } from './api.js';
import { h } from './dom.js';

/** Where this server serves media (`/api/v1/media/{id}` and `/api/v1/media/{id}/{size}`). */
const MEDIA_PATH = /^\/api\/v1\/media\/[0-9a-f-]{36}(\/(original|medium|small))?$/;

/** Whether `url` is this server's media. */
export function isMediaUrl(url) {
  return typeof url === 'string' && MEDIA_PATH.test(url);
}

/** Uploads a file with its alt text; resolves to the media object. */
export async function uploadMedia(file, alt) {
  const headers = { 'content-type': file.type || 'application/octet-stream' };
  if (session.token) headers.authorization = `Bearer ${session.token}`;
  const q = alt ? `?alt=${encodeURIComponent(alt)}` : '';
  let res;
  try {
    res = await fetch(`/api/v1/media${q}`, { method: 'POST', headers, body: file });
  } catch {
    throw new ApiError(0, 'network', 'cannot reach the server; check the connection');
  }
  const json = await res.json().catch(() => null);
  if (!res.ok) {
    const err = (json && json.error) || {};
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText, err.details);
  }
  return json;
}

const blobs = new Map();

/** A blob: URL of one of this server's media, fetched with the session's token (cached). */
export function mediaBlobUrl(url) {
  if (!blobs.has(url)) {
    const headers = session.token ? { authorization: `Bearer ${session.token}` } : {};
    blobs.set(url, fetch(url, { headers }).then((res) => {
      if (!res.ok) throw new Error(`media ${res.status}`);
      return res.blob();
    }).then((blob) => URL.createObjectURL(blob)).catch((e) => {
      blobs.delete(url);
      throw e;
    }));
  }
  return blobs.get(url);
}

const CHARS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~';

function decode83(s) {
  let v = 0;
  for (const c of s) v = v * 83 + CHARS.indexOf(c);
  return v;
}

const toLinear = (v) => {
  const x = v / 255;
  return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
};
const toSrgb = (v) => {
  const x = Math.max(0, Math.min(1, v));
  return Math.round((x <= 0.0031308 ? x * 12.92 : 1.055 * x ** (1 / 2.4) - 0.055) * 255);
};
const signPow = (v, e) => Math.sign(v) * Math.abs(v) ** e;

/** Paints a blurhash (https://blurha.sh) on a small canvas; null if it does not parse. */
export function blurhashCanvas(hash, width = 32, height = 32) {
  if (typeof hash !== 'string' || hash.length < 6) return null;
  const size = decode83(hash[0]);
  const nx = (size % 9) + 1;
  const ny = Math.floor(size / 9) + 1;
  if (hash.length !== 4 + 2 * nx * ny) return null;
  const max = (decode83(hash[1]) + 1) / 166;
  const colors = [];
  const dc = decode83(hash.slice(2, 6));
  colors.push([toLinear(dc >> 16), toLinear((dc >> 8) & 255), toLinear(dc & 255)]);
  for (let i = 1; i < nx * ny; i += 1) {
    const v = decode83(hash.slice(4 + i * 2, 6 + i * 2));
    const q = (x) => signPow((x - 9) / 9, 2) * max;
    colors.push([q(Math.floor(v / 361)), q(Math.floor(v / 19) % 19), q(v % 19)]);
  }
  const canvas = h('canvas', { class: 'blurhash', width, height, 'aria-hidden': 'true' });
  const ctx = canvas.getContext('2d');
  if (!ctx) return canvas;
  const img = ctx.createImageData(width, height);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      let r = 0; let g = 0; let b = 0;
      for (let j = 0; j < ny; j += 1) {
        for (let i = 0; i < nx; i += 1) {
          const basis = Math.cos((Math.PI * x * i) / width) * Math.cos((Math.PI * y * j) / height);
          const c = colors[i + j * nx];
          r += c[0] * basis; g += c[1] * basis; b += c[2] * basis;
        }
      }
      const p = 4 * (x + y * width);
      img.data[p] = toSrgb(r); img.data[p + 1] = toSrgb(g); img.data[p + 2] = toSrgb(b); img.data[p + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

/** A figure for one of this server's images: the blurhash until the bytes arrive. */
export function mediaFigure(attachment, size = 'medium') {
  const base = String(attachment.url).replace(/\/(original|medium|small)$/, '');
  const alt = typeof attachment.name === 'string' && attachment.name ? attachment.name : 'photo';
  const w = Number(attachment.width) || 4;
  const ht = Number(attachment.height) || 3;
  const placeholder = blurhashCanvas(attachment.blurhash);
  const img = h('img', { alt, class: 'media', width: w, height: ht, hidden: true });
  const frame = h('div', { class: 'media-frame' }, placeholder, img);
  // Through the CSSOM: the CSP refuses inline style attributes.
  frame.style.aspectRatio = `${w} / ${ht}`;
  mediaBlobUrl(`${base}/${size}`).then((src) => {
    img.src = src;
    img.hidden = false;
    if (placeholder) placeholder.remove();
  }).catch(() => {
    frame.classList.add('media-missing');
  });
  return frame;
}

/** A person's avatar (public: a plain <img>), put in place only once it has loaded, so people
 * without one leave no broken image behind. */
export function avatar(username, cls = 'avatar') {
  const slot = h('span', { class: 'avatar-slot' });
  const img = h('img', { class: cls, alt: '', width: 32, height: 32 });
  img.addEventListener('load', () => slot.append(img), { once: true });
  img.setAttribute('src', `/api/v1/users/${encodeURIComponent(username)}/avatar`);
  return slot;
}

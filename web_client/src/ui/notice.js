// In-page messages over the 3D view, so the user never faces a blank canvas without knowing why.
import { $, h, replace } from './dom.js';

/**
 * @param {'error'|'warning'|'info'} kind @param {string} title @param {string} [detail]
 * @param {{label: string, run: () => void}[]} [actions]
 */
export function showNotice(kind, title, detail = '', actions = []) {
  const box = $('#notice');
  box.className = `notice ${kind}`;
  box.hidden = false;
  replace(box, h('strong', null, title), detail ? h('p', null, detail) : null,
    actions.length ? h('div', { class: 'actions' }, ...actions.map((a) => h('button', { onclick: a.run }, a.label))) : null);
}

/** Hide the notice; with `kind`, only if the notice shown is of that kind. @param {string} [kind] */
export function clearNotice(kind) {
  const box = $('#notice');
  if (!kind || box.classList.contains(kind)) box.hidden = true;
}

/**
 * The load progress bar with its Cancel button.
 * @param {() => void} onCancel
 */
export function showProgress(onCancel) {
  const box = $('#progress');
  const bar = h('div', { class: 'bar' });
  const text = h('span', null, 'Loading model…');
  replace(box, h('div', { class: 'track' }, bar), text, h('button', { onclick: onCancel }, 'Cancel'));
  box.hidden = false;
  return {
    /** @param {number} fraction @param {number} bytes */
    update(fraction, bytes) {
      const mb = (bytes / 1e6).toFixed(1);
      if (Number.isFinite(fraction)) {
        bar.style.width = `${Math.round(fraction * 100)}%`;
        text.textContent = `Loading model… ${Math.round(fraction * 100)} % (${mb} MB)`;
      } else {
        text.textContent = `Loading model… ${mb} MB`;
      }
    },
    /** @param {string} msg */
    stage(msg) {
      text.textContent = msg;
    },
    done() {
      box.hidden = true;
    },
  };
}

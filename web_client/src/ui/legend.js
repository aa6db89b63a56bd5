// Legend of the active layer's rules: each status currently shown with its colour and count, then the
// colours value ramps currently paint (the protocol carries colours, not the rules that made them).
import { h, replace } from './dom.js';
import { safeColor } from './properties.js';

// Ramp colours shown at once; more would be noise, not information.
const MAX_RAMP_SWATCHES = 8;

/** @param {HTMLElement} root @param {import('../state.js').TwinState} state */
export function bindLegend(root, state) {
  let pending = false;
  const render = () => {
    pending = false;
    /** @type {Map<string, {color: string, n: number}>} status -> colour and count */
    const statuses = new Map();
    /** @type {Set<string>} colours painted without a status (value ramps) */
    const ramps = new Set();
    for (const v of state.visuals.values()) {
      if (v.status) {
        const row = statuses.get(v.status) ?? { color: safeColor(v.color), n: 0 };
        row.n += 1;
        statuses.set(v.status, row);
      } else if (v.color) {
        ramps.add(safeColor(v.color));
      }
    }
    root.hidden = statuses.size === 0 && ramps.size === 0;
    replace(root, h('strong', null, `Layer: ${state.layer}`), h('ul', null,
      ...[...statuses].sort().map(([status, r]) => h('li', null, h('span', { class: 'swatch', style: `background:${r.color}` }),
        status, h('small', null, ` ${r.n}`))),
      ramps.size ? h('li', null, ...[...ramps].sort().slice(0, MAX_RAMP_SWATCHES).map((c) => h('span', { class: 'swatch', style: `background:${c}` })),
        'live value') : null));
  };
  // Redraw at most once per frame however many deltas arrive.
  const schedule = () => {
    if (!pending) requestAnimationFrame(render);
    pending = true;
  };
  state.addEventListener('reset', schedule);
  state.addEventListener('delta', schedule);
}

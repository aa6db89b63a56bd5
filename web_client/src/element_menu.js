// What the context menu offers for elements (one, a storey's contents, a class), in the view and the tree:
// hide, isolate, x-ray the others, transparency, show all, zoom to, properties, add a topic.
import { OPACITIES } from './visibility.js';

/**
 * @typedef {{ids: string[], label: string, id: string|null}} MenuTarget
 *   the elements acted on (a container's id stands for its contents), what the menu calls them, and the one
 *   element or container the row or pick is (null for a class)
 * @typedef {{visibility: import('./visibility.js').Visibility, zoomTo: (ids: string[]) => void,
 *            properties: (id: string) => void, addTopic: ((id: string) => void)|null}} MenuActions
 *   addTopic: null for a role that may not make topics
 */

/** @param {number} opacity */
export const opacityLabel = (opacity) => (opacity < 1 ? `${Math.round((1 - opacity) * 100)} % see-through` : 'Opaque');

/**
 * @param {MenuTarget|null} target null: nothing under the pointer (only what acts on the whole model)
 * @param {MenuActions} actions
 * @returns {import('./ui/context_menu.js').MenuItem[]}
 */
export function elementMenu(target, actions) {
  const v = actions.visibility;
  const showAll = { label: 'Show all', run: () => v.showAll(), disabled: !v.active };
  if (!target) return [showAll];
  const { ids, id } = target;
  return [
    { label: 'Hide', run: () => v.hide(ids) },
    { label: 'Isolate', run: () => v.isolate(ids) },
    { label: 'X-ray others', run: () => v.xrayOthers(ids) },
    { label: 'Transparency', items: OPACITIES.map((o) => ({ label: opacityLabel(o), run: () => v.setOpacity(ids, o) })) },
    showAll,
    { label: 'Zoom to', run: () => actions.zoomTo(ids) },
    { label: 'Properties', run: () => id && actions.properties(id), disabled: !id },
    ...(actions.addTopic && id ? [{ label: 'Add topic here', run: () => actions.addTopic?.(id) }] : []),
  ];
}

// Names for people to read. An element reads as its name and class wherever a person reads it ("Pump P-102
// (IfcPump)"), its id on demand (a tooltip, and a button that copies it); a user reads as the display name the
// server granted (docs/PROTOCOL.md §12), not as the identity (`guest-…`) that authorship is recorded under.
import { h } from './dom.js';

export class Names {
  /**
   * @param {() => (import('../catalog.js').Catalog|null)} catalog the loaded scene's catalogue (null before)
   * @param {import('../session.js').Session} session
   */
  constructor(catalog, session) {
    this.catalog = catalog;
    this.session = session;
  }

  /** An element as a person reads it: its name, else its id. @param {string} id */
  element(id) {
    return this.catalog()?.label(id) ?? id;
  }

  /** Name and class: "Pump P-102 (IfcPump)"; the id only for an element the scene does not name. @param {string} id */
  describe(id) {
    const rec = this.catalog()?.get(id);
    if (!rec?.name) return id;
    return rec.class ? `${rec.name} (${rec.class})` : rec.name;
  }

  /** `describe(id)` with the id on demand: in its tooltip, and a button that copies it. @param {string} id */
  ref(id) {
    return h('span', { class: 'el-ref', title: `id: ${id}`, dataset: { element: id } }, this.describe(id), copyIdButton(id));
  }

  /**
   * A user (an identity, as in `author`) as people read it: their display name while they are in the session,
   * else the user id, but "a visitor" for a guest identity (its random id means nothing to anyone).
   * @param {string} user
   */
  person(user) {
    const w = this.session.welcome;
    if (w && user === w.user) return w.name || user;
    for (const p of this.session.state.presence.values()) if (p.user === user) return p.client;
    return user.startsWith('guest-') ? 'a visitor' : user;
  }
}

/** A small button that copies an id to the clipboard (ids are for tools and support, not for reading). @param {string} id */
export function copyIdButton(id) {
  const button = h('button', { type: 'button', class: 'copy-id', title: `Copy the id ${id}`, 'aria-label': `copy id ${id}` }, 'Copy id');
  button.addEventListener('click', (e) => {
    e.stopPropagation();
    navigator.clipboard?.writeText(id).then(() => { button.textContent = 'Copied'; }, () => { button.textContent = id; });
  });
  return button;
}

// Who you are in the session, at the top of the People list: your display name and role, and the form to
// change the name. The server grants names at hello (unique in the session, never a role or someone else's:
// docs/PROTOCOL.md §12), so a new name reconnects. A visitor without a link who gave no name is asked for
// one; a name the server refused (close 4009) is asked for again, with its reason, over the view.
import { h, replace } from './dom.js';

const REMEMBERED = 'twinview.name';
// As the server keeps at most 64 characters of a name (viewer_server/rooms.py MAX_USER_NAME).
const MAX_NAME = 64;

/** The name this browser last chose ("" if none). */
export const rememberedName = () => localStorage.getItem(REMEMBERED) ?? '';

export class YouPanel {
  /**
   * @param {HTMLElement} root where the "you" line goes (above the People list)
   * @param {import('../session.js').Session} session
   * @param {import('../auth.js').Identity} identity
   * @param {boolean} named the link's token names us: the server ignores a name we ask for, so none is asked
   */
  constructor(root, session, identity, named) {
    this.root = root;
    this.session = session;
    this.identity = identity;
    this.named = named;
    /** Whether the form is open in the People section: at first for a visitor who did not say who they are. */
    this.editing = false;
    let ask = !session.name;
    identity.addEventListener('change', () => {
      this.editing ||= ask && Boolean(session.welcome?.user?.startsWith('guest-'));
      ask = false;
      this.render();
    });
    this.render();
  }

  render() {
    const w = this.session.welcome;
    if (!w) return replace(this.root);
    const line = h('div', { class: 'you' }, 'You: ', h('strong', { class: 'you-name' }, w.name || w.user),
      h('span', { class: 'role' }, this.identity.role ?? ''),
      this.named || this.editing ? null : h('button', { class: 'rename', onclick: () => { this.editing = true; this.render(); } }, 'Change name'));
    replace(this.root, line, this.editing ? this.form('', { cancel: () => { this.editing = false; this.render(); } }) : null);
  }

  /**
   * The name form: `reason` says why a name is needed (the server's refusal); `cancel` closes it (none: it
   * cannot be skipped); `sent` runs once a name was sent.
   * @param {string} reason @param {{cancel?: () => void, sent?: () => void}} [opts]
   */
  form(reason, { cancel, sent } = {}) {
    const input = /** @type {HTMLInputElement} */ (h('input', { class: 'name-input', maxlength: MAX_NAME, required: true,
      value: rememberedName(), 'aria-label': 'your name', placeholder: 'Your name' }));
    const form = h('form', { class: 'name-form', onsubmit: (/** @type {SubmitEvent} */ e) => {
      e.preventDefault();
      const name = input.value.trim();
      if (!name) return;
      localStorage.setItem(REMEMBERED, name);
      this.editing = false;
      this.session.rename(name);
      sent?.();
    } },
    reason ? h('p', { class: 'why' }, reason) : h('p', { class: 'hint' }, 'Others see you by this name'),
    input, h('button', { type: 'submit', class: 'join' }, 'Use this name'),
    cancel ? h('button', { type: 'button', class: 'cancel', onclick: cancel }, 'Not now') : null);
    queueMicrotask(() => reason && input.focus());
    return form;
  }
}

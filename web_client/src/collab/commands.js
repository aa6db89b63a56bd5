// Operator commands on the selected element (the bindings file's `commands`): a button per command, a
// confirmation dialog naming element and command, then the server's answer — sent, or failed and why.
import { h, replace } from '../ui/dom.js';
import { uuid } from '../topics/viewpoint.js';

/** @typedef {{command: string, range?: number[], unit?: string}} ElementCommand a command the element takes (from its bindings) */

export class CommandPanel {
  /**
   * @param {HTMLElement} root the panel section (shown only to roles that may send commands)
   * @param {{session: import('../session.js').Session, identity: import('../auth.js').Identity,
   *          names: import('../ui/names.js').Names, commandsOf: (id: string) => Promise<ElementCommand[]>}} deps
   */
  constructor(root, deps) {
    this.root = root;
    this.deps = deps;
    /** @type {string|null} */
    this.element = null;
    /** @type {Map<string, HTMLElement>} ref -> where its answer goes */
    this.pending = new Map();
    this.dialog = /** @type {HTMLDialogElement} */ (h('dialog', { class: 'confirm' }));
    document.body.appendChild(this.dialog);
    deps.session.addEventListener('message', (e) => {
      const msg = /** @type {import('../session.js').SessionEvent<'message'>} */ (e).detail;
      if (msg.type !== 'command_ack' || !msg.ref) return;
      const out = this.pending.get(msg.ref);
      this.pending.delete(msg.ref);
      if (out) {
        out.className = `command-status ${msg.status}`;
        out.textContent = `${msg.command} to ${this.deps.names.element(msg.element)}: ${msg.status}${msg.detail ? ` — ${msg.detail}` : ''}`;
      }
    });
    deps.session.addEventListener('servererror', (e) => {
      const err = /** @type {import('../session.js').SessionEvent<'servererror'>} */ (e).detail;
      if (err.ref !== 'command') return;
      if (this.pending.size) e.preventDefault(); // shown beside the command below
      for (const out of this.pending.values()) {
        out.className = 'command-status failed';
        out.textContent = `${err.code}: ${err.message}`;
      }
      this.pending.clear();
    });
    this.show(null);
  }

  /** Show the commands of an element (null: none selected). @param {string|null} id */
  async show(id) {
    this.element = id;
    if (!id || !this.deps.identity.may('command.send')) return replace(this.root, h('p', { class: 'hint' }, 'Select an element to command it.'));
    const commands = await this.deps.commandsOf(id).catch(() => []);
    if (this.element !== id) return; // another element was picked meanwhile
    const status = h('p', { class: 'command-status', role: 'status' });
    replace(this.root,
      commands.length ? h('div', { class: 'actions' }, ...commands.map((c) =>
        h('button', { class: 'command', dataset: { command: c.command }, onclick: () => this.#confirm(id, c, status) }, c.command)))
        : h('p', { class: 'hint' }, 'This element takes no commands.'),
      status);
  }

  /** Ask before anything moves; a command with a range asks for its value too. @param {string} element @param {ElementCommand} c @param {HTMLElement} status */
  #confirm(element, c, status) {
    const [lo, hi] = c.range ?? [];
    const value = c.range ? /** @type {HTMLInputElement} */ (h('input', { type: 'number', class: 'command-value', min: lo, max: hi,
      step: 'any', value: lo, 'aria-label': `${c.command} value` })) : null;
    replace(this.dialog,
      h('p', null, 'Send ', h('strong', null, c.command), ' to ', h('strong', null, this.deps.names.element(element)), '?'),
      value ? h('label', null, `Value (${lo} … ${hi}${c.unit ? ` ${c.unit}` : ''}) `, value) : null,
      h('p', { class: 'hint' }, 'This acts on the real plant.'),
      h('div', { class: 'actions' },
        h('button', { class: 'cancel', onclick: () => this.dialog.close() }, 'Cancel'),
        h('button', { class: 'send-command', onclick: () => {
          this.dialog.close();
          this.#send(element, c.command, value ? Number(value.value) : null, status);
        } }, `Send ${c.command}`)));
    this.dialog.showModal();
  }

  /** @param {string} element @param {string} command @param {number|null} value @param {HTMLElement} status */
  #send(element, command, value, status) {
    const ref = uuid();
    status.className = 'command-status waiting';
    status.textContent = `${command} to ${this.deps.names.element(element)}: sending…`;
    if (!this.deps.session.send({ type: 'command', element, command, ref, ...(value === null ? {} : { value }) })) {
      status.textContent = `${command}: not connected, not sent`;
      return;
    }
    this.pending.set(ref, status);
  }
}

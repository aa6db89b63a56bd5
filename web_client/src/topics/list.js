// The side list of topics with filters by status, priority, assignee, label and text. Clicking a topic
// opens it; the list follows the store live.
import { h, replace } from '../ui/dom.js';
import { STATUS_COLORS } from './pins.js';

const STATUSES = ['open', 'in_progress', 'resolved', 'closed'];
const PRIORITIES = ['low', 'normal', 'high', 'critical'];
const ANY = '';

/** @param {string} s */
export const statusText = (s) => s.replace('_', ' ');

/**
 * A topic in a few lines of plain text (the XR panel): title, status and priority, author and assignee, the
 * element it is pinned on, then the latest comments; people and elements by their names.
 * @param {import('./store.js').TopicStore} store @param {string} guid @param {number} max lines at most
 * @param {import('../ui/names.js').Names} names
 * @returns {string[]}
 */
export function topicLines(store, guid, max, names) {
  const t = store.topics.get(guid);
  if (!t) return [];
  const comments = store.thread(guid).filter((c) => !c.deleted).map((c) => `${names.person(c.author)}: ${c.text}`);
  const head = [t.title, `${statusText(t.status)} · ${t.priority}${t.due_date ? ` · due ${t.due_date}` : ''}`,
    `by ${names.person(t.author)}${t.assignee ? ` · assigned to ${t.assignee}` : ''}`, t.pin ? `on ${names.describe(t.pin.element)}` : ''];
  const lines = head.filter(Boolean);
  return [...lines, ...comments.slice(-(max - lines.length))].slice(0, max);
}

export class TopicList {
  /**
   * @param {HTMLElement} root
   * @param {import('./store.js').TopicStore} store
   * @param {(guid: string) => void} onOpen
   */
  constructor(root, store, onOpen) {
    this.store = store;
    this.onOpen = onOpen;
    /** @type {string|null} */
    this.current = null;
    const select = (/** @type {string} */ name, /** @type {string[]} */ values) => /** @type {HTMLSelectElement} */ (
      h('select', { 'aria-label': name, dataset: { filter: name }, onchange: () => this.render() },
        new Option(`any ${name}`, ANY), ...values.map((v) => new Option(statusText(v), v))));
    this.filters = {
      status: select('status', STATUSES),
      priority: select('priority', PRIORITIES),
      assignee: select('assignee', []),
      label: select('label', []),
      text: /** @type {HTMLInputElement} */ (h('input', { type: 'search', placeholder: 'Filter topics', 'aria-label': 'filter topics',
        oninput: () => this.render() })),
    };
    this.items = h('ul', { class: 'topics' });
    replace(root, h('div', { class: 'topic-filters' }, ...Object.values(this.filters)), this.items);
    store.addEventListener('change', () => this.render());
    this.render();
  }

  /** @param {string|null} guid */
  highlight(guid) {
    this.current = guid;
    this.render();
  }

  render() {
    const topics = [...this.store.topics.values()];
    fillOptions(this.filters.assignee, topics.flatMap((t) => (t.assignee ? [t.assignee] : [])));
    fillOptions(this.filters.label, topics.flatMap((t) => t.labels ?? []));
    const f = Object.fromEntries(Object.entries(this.filters).map(([k, el]) => [k, el.value]));
    const text = f.text.trim().toLowerCase();
    const shown = topics
      .filter((t) => (!f.status || t.status === f.status) && (!f.priority || t.priority === f.priority)
        && (!f.assignee || t.assignee === f.assignee) && (!f.label || (t.labels ?? []).includes(f.label))
        && (!text || `${t.title}\n${t.description ?? ''}\n${t.author}`.toLowerCase().includes(text)))
      .sort((a, b) => b.created - a.created);
    replace(this.items, ...shown.map((t) => h('li', {
      class: t.guid === this.current ? 'topic current' : 'topic', dataset: { guid: t.guid }, onclick: () => this.onOpen(t.guid),
    },
    h('span', { class: 'dot', style: `background:${STATUS_COLORS[t.status] ?? STATUS_COLORS.open}` }),
    h('span', { class: 'title' }, t.title),
    h('small', null, `${statusText(t.status)} · ${t.priority}${t.assignee ? ` · ${t.assignee}` : ''}`))),
    shown.length ? null : h('li', { class: 'empty' }, topics.length ? 'No topic matches the filters' : 'No topics yet'));
  }
}

/** Keep a filter's choices in line with the values in use, keeping the current choice. @param {HTMLSelectElement} sel @param {string[]} values */
function fillOptions(sel, values) {
  const keep = sel.value;
  const uniq = [...new Set(values)].sort();
  if (uniq.join('\n') === [...sel.options].slice(1).map((o) => o.value).join('\n')) return;
  sel.replaceChildren(sel.options[0], ...uniq.map((v) => new Option(v, v)));
  sel.value = uniq.includes(keep) ? keep : ANY;
}

// TypeScript declarations of TwinView protocol v1, generated from viewer_server/protocol.py: do not edit.
// Regenerate: python -m viewer_server.protocol --typescript > web_client/src/protocol_types.d.ts
// The web client's JSDoc imports these (docs/CLIENT.md); `npm run typecheck` checks it against them.

/**
 * Answer to `publish`: how many readings were accepted, and why the others were not.
 */
export interface Ack {
  type: "ack";
  accepted: number;
  rejected: Rejection[];
  ref?: string | null;
  durable?: boolean;
}

/**
 * An alarm in the list (the snapshot's `alarms`; every alarm event carries it at its new state), with
 * its ISA-18.2 state: `unacknowledged` (active), `acknowledged` (active), `returned` (to normal, not yet
 * acknowledged), `shelved` or `out_of_service` (suppressed, `active` says whether the condition holds);
 * `normal` (only in events) = it left the list. `element` shows it, `source`.`prop` triggered it.
 */
export interface Alarm {
  id: string;
  element: string;
  since: number;
  prop?: string;
  source?: string;
  layer?: string;
  severity?: string;
  message?: string;
  value?: boolean | number | string | null;
  unit?: string;
  state?: "acknowledged" | "normal" | "out_of_service" | "returned" | "shelved" | "unacknowledged";
  active?: boolean;
  changed?: number;
  revision?: number;
  returned?: number | null;
  acknowledged_by?: string;
  acknowledged_at?: number | null;
  suppressed_by?: string;
  suppressed_at?: number | null;
  shelved_until?: number | null;
  reason?: string;
}

/**
 * Acknowledge an unacknowledged or returned alarm (`alarm.acknowledge`); answered with `saved`.
 */
export interface AlarmAck {
  type: "alarm_ack";
  id: string;
  ref?: string | null;
}

/**
 * Put an alarm that is out of service back (`alarm.service`); answered with `saved`.
 */
export interface AlarmInService {
  type: "alarm_in_service";
  id: string;
  ref?: string | null;
}

/**
 * Take a listed alarm out of service until it is put back (`alarm.service`), e.g. while its instrument
 * is repaired; answered with `saved`.
 */
export interface AlarmOutOfService {
  type: "alarm_out_of_service";
  id: string;
  reason: string;
  ref?: string | null;
}

/**
 * Shelve a listed alarm for `minutes` (`alarm.shelve`): it stays listed but does not ask for attention
 * until someone unshelves it or the time is up; answered with `saved`.
 */
export interface AlarmShelve {
  type: "alarm_shelve";
  id: string;
  minutes: number;
  reason: string;
  ref?: string | null;
}

/**
 * End a shelving early (`alarm.shelve`); answered with `saved`.
 */
export interface AlarmUnshelve {
  type: "alarm_unshelve";
  id: string;
  ref?: string | null;
}

export interface Attachment {
  id: string;
  mime: string;
  size: number;
  sha256: string;
}

/**
 * A topic's reference to a document outside the archive (`DocumentReference` with a `Url`).
 */
export interface BcfDocument {
  guid: string;
  url: string;
  description?: string | null;
}

/**
 * What a BCF file from another tool says that TwinView does not use itself, kept so that exporting
 * the topic gives it back. `status` and `priority` hold the other tool's spelling while TwinView's own
 * value is still the one they were read as; `priority` "" records that the file had none.
 */
export interface BcfFields {
  status?: string | null;
  priority?: string | null;
  server_assigned_id?: string | null;
  due_date?: string | null;
  stage?: string | null;
  files?: BcfFile[];
  reference_links?: string[];
  related_topics?: string[];
  documents?: BcfDocument[];
}

/**
 * A model file a BCF topic refers to (markup `Header/Files/File`), as the other tool wrote it.
 */
export interface BcfFile {
  filename?: string | null;
  date?: string | null;
  reference?: string | null;
  ifc_project?: string | null;
  ifc_spatial_structure_element?: string | null;
  is_external?: boolean;
}

/**
 * A perspective camera (BCF PerspectiveCamera) or, with `ortho_height`, an orthogonal one.
 */
export interface Camera {
  position: Vec3;
  direction: Vec3;
  up: Vec3;
  fov_deg?: number;
  ortho_height?: number | null;
  aspect_ratio?: number | null;
}

/**
 * Change what this session sees (capability `interest`): answered with a snapshot of the new interest;
 * `interest` null = the whole scene again.
 */
export interface ChangeInterest {
  type: "interest";
  interest?: Interest | null;
}

export type ClientMessage = Hello | Subscribe | ChangeInterest | Publish | PresenceUpdate | Ping | TopicCreate | TopicUpdate | TopicDelete | CommentAdd | CommentEdit | CommentDelete | ProcedureControl | StepComplete | PresenterTake | PresenterRelease | PresenterView | HandRaise | HandLower | Markup | Command | AlarmAck | AlarmShelve | AlarmUnshelve | AlarmOutOfService | AlarmInService | Seek | Play | Pause | Live;

/**
 * Keeps the half-space the normal points away from (BCF convention: the normal points to the removed side).
 */
export interface ClippingPlane {
  location: Vec3;
  direction: Vec3;
}

export interface ColoredComponents {
  color: string;
  ids: string[];
}

/**
 * Operator only: a command on an element from the bindings file's `commands` section.
 */
export interface Command {
  type: "command";
  element: string;
  command: string;
  value?: number | null;
  ref?: string | null;
}

/**
 * Answer to `command`: `sent` once the broker acknowledged it (QoS 1), else `failed` with why.
 */
export interface CommandAck {
  type: "command_ack";
  status: "failed" | "sent";
  detail: string;
  element: string;
  command: string;
  ref?: string | null;
}

export interface Comment {
  guid: string;
  topic: string;
  author: string;
  text: string;
  created: number;
  revision?: number;
  modified?: number | null;
  reply_to?: string | null;
  viewpoint?: string | null;
  deleted?: boolean;
  original_author?: string | null;
  replay_time?: number | null;
}

/**
 * Comment on a topic (`comment.create`); `reply_to` threads it under another comment.
 */
export interface CommentAdd {
  type: "comment_add";
  topic: string;
  text: string;
  reply_to?: string | null;
  viewpoint?: string | null;
  guid?: string | null;
  ref?: string | null;
}

export interface CommentDelete {
  type: "comment_delete";
  guid: string;
  revision: number;
  ref?: string | null;
}

export interface CommentEdit {
  type: "comment_edit";
  guid: string;
  revision: number;
  text: string;
  ref?: string | null;
}

/**
 * Exactly one of: `select` (the trainee selects this element), `value` (a live value in range).
 */
export interface Completion {
  select?: string | null;
  value?: ValueRange | null;
}

/**
 * Changes with seq in [first, last]; after applying it the client holds the state as of `last`.
 *
 * props keyed "element/prop"; visuals keyed "element@layer"; presence keyed by session id
 * (null = the session left). Keys are split at their last "/" or "@".
 */
export interface Delta {
  type: "delta";
  first: number;
  last: number;
  props?: Record<string, PropState>;
  visuals?: Record<string, Visual>;
  presence?: Record<string, Presence | null>;
  events?: Event[];
  presenter?: Record<string, PresenterState>;
}

/**
 * A message could not be handled; the connection stays open. `ref` echoes the request's `ref`
 * when it had one, else the offending message's type.
 */
export interface Error {
  type: "error";
  code: string;
  message: string;
  ref?: string | null;
  revision?: number | null;
  field?: string | null;
  range?: HistoryRange | null;
}

/**
 * Something that happened; delivered exactly once, in seq order, never coalesced.
 *
 * Alarm kinds (ALARM_EVENTS) carry the whole `alarm` at its new state, `user` who changed it ("" = the
 * process, or the end of a shelving); `element` shows the alarm, `source` is the element whose property
 * triggered it.
 * Annotation kinds (ANNOTATION_EVENTS) carry the whole `topic` or `comment` at its new revision, `id`
 * being its guid, `user` who changed it. An event with a `session` reaches only that session's clients.
 */
export interface Event {
  seq: number;
  kind: string;
  id: string;
  element: string;
  ts: number;
  prop?: string;
  source?: string;
  layer?: string;
  severity?: string;
  message?: string;
  value?: boolean | number | string | null;
  session?: string;
  user?: string;
  topic?: Topic | null;
  comment?: Comment | null;
  procedure?: string;
  step?: number | null;
  viewpoint?: Viewpoint | null;
  run?: ProcedureRun | null;
  command?: string;
  point?: [number, number, number] | null;
  alarm?: Alarm | null;
}

/**
 * A raised hand in the queue (oldest first): the identity `user`, its display `name`, its connection.
 */
export interface Hand {
  user: string;
  session: string;
  ts: number;
  name?: string;
}

/**
 * Leave the queue; the presenter/admin may lower `session`'s hand, or all hands.
 */
export interface HandLower {
  type: "hand_lower";
  session?: string | null;
  all?: boolean;
}

/**
 * Join the raise-hand queue.
 */
export interface HandRaise {
  type: "hand_raise";
}

/**
 * First message of every connection.
 */
export interface Hello {
  type: "hello";
  client: string;
  client_version: string;
  protocol?: number;
  role?: "admin" | "annotator" | "operator" | "presenter" | "publisher" | "viewer";
  layer?: string | null;
  resume?: Resume | null;
  session?: string | null;
  token?: string | null;
  name?: string;
  interest?: Interest | null;
}

/**
 * The times the history holds (Unix seconds); `earliest` is None while it is empty.
 */
export interface HistoryRange {
  earliest: number | null;
  latest: number;
}

/**
 * What a client sees of the scene (capability `interest`): the elements whose own box meets `box`
 * ([min, max] corners in metres, the manifest's world frame), and the elements listed in `elements`. Its
 * snapshot and deltas then carry the props and visuals of those elements only; alarms, events, presence,
 * topics and the presenter are not filtered. An element without geometry of its own (a storey, a bindings
 * tag) is in the area only when listed. Both absent: the whole scene, as without an interest.
 */
export interface Interest {
  box?: [[number, number, number], [number, number, number]] | null;
  elements?: string[] | null;
}

/**
 * Back to the live stream: answered with a resync `snapshot` (reason "live"). A follower returns to
 * following the presenter's replay, if one is running.
 */
export interface Live {
  type: "live";
  ref?: string | null;
}

/**
 * A property value of the pinned element at the moment the topic was made.
 */
export interface LiveValue {
  prop: string;
  value: boolean | number | string;
  unit?: string;
  ts?: number;
}

/**
 * A quick pin with a short note; answered with `saved` carrying the same `ref`.
 */
export interface Markup {
  type: "markup";
  element: string;
  point: [number, number, number];
  note: string;
  ref?: string | null;
}

/**
 * A measurement drawn in the view, in world coordinates: a distance (two points), an angle (three, the
 * vertex in the middle) or a planar area (the polygon's corners, in order).
 */
export interface Measurement {
  kind: "angle" | "area" | "distance";
  points: Vec3[];
}

/**
 * Stop playing; the twin stays as of the current `as_of` (answered with `replay`, `playing` false).
 */
export interface Pause {
  type: "pause";
  ref?: string | null;
}

/**
 * Where the topic is pinned: an element and a world point with its surface normal.
 */
export interface Pin {
  element: string;
  point: Vec3;
  normal: Vec3;
}

export interface Ping {
  type: "ping";
  t?: number | null;
}

/**
 * Play the history from `from` (default: where the replay stands; from live, PLAY_DEFAULT_BACK_S ago) at
 * `speed` × real time (MIN_REPLAY_SPEED…MAX_REPLAY_SPEED): `replay`, then `replay_delta`s in time order.
 */
export interface Play {
  type: "play";
  speed: number;
  from?: number | null;
  ref?: string | null;
}

export interface Pong {
  type: "pong";
  t: number | null;
  server_time: number;
}

/**
 * A user's viewpoint: camera position (m) and orientation (x, y, z, w), optional pointer ray, and
 * the device: "xr" while in an immersive session (the position is then the head), else a browser.
 */
export interface Pose {
  position: [number, number, number];
  quaternion: [number, number, number, number];
  ray_origin?: [number, number, number] | null;
  ray_direction?: [number, number, number] | null;
  device?: "browser" | "xr";
}

/**
 * Another connection's presence as seen by everyone in its session: `client` is the display name (unique
 * in the session; a visitor's ends in " (guest)"), `user` the verified identity (as in `Topic.author`),
 * `role` what the server granted it (the People list and a trainer's progress table show it).
 */
export interface Presence {
  client: string;
  pose: Pose;
  ts: number;
  user?: string;
  role?: "admin" | "annotator" | "operator" | "presenter" | "publisher" | "viewer";
}

/**
 * This session's current pose (heartbeat); fanned out as presence state, coalesced per session.
 */
export interface PresenceUpdate {
  type: "presence";
  pose: Pose;
}

/**
 * End presenter mode (the presenter, or an admin).
 */
export interface PresenterRelease {
  type: "presenter_release";
}

/**
 * Who presents (user "" = nobody), their current view, and the raise-hand queue.
 */
export interface PresenterState {
  presenter?: string;
  session?: string;
  viewpoint?: Viewpoint | null;
  ts?: number;
  hands?: Hand[];
}

/**
 * Become the presenter (presenter/admin).
 */
export interface PresenterTake {
  type: "presenter_take";
}

/**
 * The presenter's current camera; throttled and coalesced by the server.
 */
export interface PresenterView {
  type: "presenter_view";
  viewpoint: Viewpoint;
}

/**
 * Presenter/admin: start a procedure by name, move the session to another step, or stop.
 */
export interface ProcedureControl {
  type: "procedure_control";
  action: "back" | "goto" | "next" | "start" | "stop";
  name?: string | null;
  step?: number | null;
  from_step?: number | null;
}

/**
 * A procedure run of the session: its steps, the current one, and every trainee's completions.
 */
export interface ProcedureRun {
  run: string;
  name: string;
  title: string;
  step: number;
  started: number;
  by: string;
  steps: StepInfo[];
  completions?: StepDone[];
  finished?: "" | "completed" | "stopped";
}

/**
 * The current value of one element property: value, source time of its last change, unit, quality;
 * `silent_since` is present while the source is stale (no sample for longer than its binding's
 * `stale_after`): the server receive time of its last sample.
 */
export interface PropState {
  v: boolean | number | string;
  ts: number;
  u?: string;
  q?: "bad" | "good" | "uncertain";
  silent_since?: number | null;
}

/**
 * Readings from a publisher session; answered with `ack` carrying the same `ref`. With a data dir the ack
 * is sent after the accepted readings are committed to the historian (`ack.durable`): an acknowledged
 * reading survives kill -9 of the server (docs/PROTOCOL.md §8).
 */
export interface Publish {
  type: "publish";
  readings: Reading[];
  ref?: string | null;
}

/**
 * One measurement from a producer: by binding `key`, or directly by `element` + `prop`.
 *
 * `ts` is seconds since the Unix epoch (server receive time if omitted). `value` and `ts` are plain floats
 * on purpose: a NaN or ±inf reading is refused alone (reason `not_finite` / `future_timestamp`), not its batch.
 */
export interface Reading {
  value: boolean | number | string;
  key?: string | null;
  element?: string | null;
  prop?: string | null;
  ts?: number | null;
  unit?: string | null;
  quality?: "bad" | "good" | "uncertain" | null;
}

/**
 * Why reading number `index` of a batch was refused. `reason` is one of REJECT_REASONS.
 */
export interface Rejection {
  index: number;
  reason: string;
  detail?: string;
}

/**
 * The twin as it was at `as_of` on the connection's layer; replaces everything the client held (like a
 * snapshot) until `live`. props keyed "element/prop" (the last value at or before `as_of`), visuals keyed
 * by element (the layer's rules applied to those values), `alarms` those listed at `as_of`, `topics` and
 * `comments` of the session as they were. `driven_by`: the presenter's display name when the presenter's
 * seek / play / pause put the client here. `ref` echoes the request's.
 */
export interface Replay {
  type: "replay";
  as_of: number;
  speed: number;
  playing: boolean;
  layer: string;
  range: HistoryRange;
  props: Record<string, PropState>;
  visuals: Record<string, Visual>;
  alarms: Alarm[];
  topics?: Topic[];
  comments?: Comment[];
  driven_by?: string | null;
  ref?: string | null;
}

/**
 * While playing: what changed in the history up to `as_of` (one per ~33 ms of wall time, in time order).
 * props keyed "element/prop", visuals keyed by element; `alarms`, when present, is the whole list at `as_of`;
 * `events` are the recorded events since the previous frame, oldest first.
 */
export interface ReplayDelta {
  type: "replay_delta";
  as_of: number;
  props?: Record<string, PropState>;
  visuals?: Record<string, Visual>;
  alarms?: Alarm[] | null;
  events?: Event[];
  playing?: boolean;
  driven_by?: string | null;
  presenter?: PresenterState | null;
}

/**
 * Where a reconnecting client left off: the server epoch and the last seq it applied.
 */
export interface Resume {
  epoch: string;
  seq: number;
}

/**
 * Answer to an annotation or alarm request, sent after the change is committed to disk: `seq` is its
 * event; for an alarm, `guid` is its id and `revision` the alarm's.
 */
export interface Saved {
  type: "saved";
  ref: string | null;
  kind: string;
  guid: string;
  revision: number;
  seq: number;
}

/**
 * Show the twin as of `t` (Unix seconds): answered with `replay` (paused at `t`), or `out_of_range`.
 * A follower's own seek breaks away from the presenter's replay until it sends `live`.
 */
export interface Seek {
  type: "seek";
  t: number;
  ref?: string | null;
}

export type ServerMessage = Welcome | Snapshot | Delta | Ack | Error | Pong | Saved | CommandAck | Replay | ReplayDelta | Status;

/**
 * The full state of the session's layer as of `seq`; replaces everything the client held.
 *
 * `resync` is true when this snapshot replaces a resume that was not possible (`reason` says why).
 * props are keyed "element/prop"; visuals are keyed by element (for `layer`).
 */
export interface Snapshot {
  type: "snapshot";
  seq: number;
  epoch: string;
  scene: string;
  layer: string;
  glb_url: string;
  manifest_url: string;
  props: Record<string, PropState>;
  visuals: Record<string, Visual>;
  alarms: Alarm[];
  presence?: Record<string, Presence>;
  alarm_history?: Event[];
  resync?: boolean;
  reason?: string | null;
  session?: string;
  topics?: Topic[];
  comments?: Comment[];
  procedure?: ProcedureRun | null;
  presenter?: PresenterState | null;
  interest?: Interest | null;
}

/**
 * The server's health as it concerns the client (PROTOCOL.md §16): `degraded` while the shared bus of a
 * deployment of several processes is unreachable — what is shown stays readable, changes are refused
 * (`not_saved`) and no live update arrives; `ok` again once it is back. Sent when it changes, and after
 * `welcome` while degraded.
 */
export interface Status {
  type: "status";
  state: "degraded" | "ok";
  message?: string;
}

/**
 * A trainee completed `step` (acknowledge; or select with the selected `element`).
 */
export interface StepComplete {
  type: "step_complete";
  step: number;
  element?: string | null;
}

/**
 * `user` completed `step` at `ts`; user "*" = for everyone, by the live twin (a value condition).
 */
export interface StepDone {
  step: number;
  user: string;
  ts: number;
  element?: string;
  value?: boolean | number | string | null;
}

/**
 * One step of the active procedure, as clients show it; `viewpoint.selected` = `highlight`.
 */
export interface StepInfo {
  id: string;
  title: string;
  instructions?: string;
  highlight?: string[];
  viewpoint?: Viewpoint | null;
  watch?: Watch[];
  complete_when?: "acknowledge" | Completion;
}

/**
 * Switch this session to another layer; answered with a snapshot of that layer.
 */
export interface Subscribe {
  type: "subscribe";
  layer: string;
}

export interface Topic {
  guid: string;
  title: string;
  author: string;
  created: number;
  pin?: Pin | null;
  description?: string;
  status?: "closed" | "in_progress" | "open" | "resolved";
  priority?: "critical" | "high" | "low" | "normal";
  topic_type?: string;
  assignee?: string | null;
  labels?: string[];
  due_date?: string | null;
  viewpoints?: Viewpoint[];
  live_values?: LiveValue[];
  attachments?: Attachment[];
  revision?: number;
  modified?: number | null;
  modified_by?: string | null;
  deleted?: boolean;
  original_author?: string | null;
  bcf?: BcfFields | null;
  replay_time?: number | null;
}

/**
 * Create a topic (`topic.create`); answered with `saved`, and a `topic_created` event to everyone.
 */
export interface TopicCreate {
  type: "topic_create";
  topic: TopicDraft;
  ref?: string | null;
}

/**
 * Withdraw a topic (own: `topic.delete_own`, anyone's: `topic.moderate`); kept, flagged deleted.
 */
export interface TopicDelete {
  type: "topic_delete";
  guid: string;
  revision: number;
  ref?: string | null;
}

/**
 * A new topic as the client writes it; the server sets author, times and the pinned element's live
 * values. `guid` may be chosen by the client (idempotent retries, BCF); `attachments` are ids from
 * `POST /api/sessions/{id}/attachments`.
 */
export interface TopicDraft {
  title: string;
  description?: string;
  pin?: Pin | null;
  topic_type?: string;
  status?: "closed" | "in_progress" | "open" | "resolved";
  priority?: "critical" | "high" | "low" | "normal";
  assignee?: string | null;
  labels?: string[];
  due_date?: string | null;
  viewpoints?: Viewpoint[];
  attachments?: string[];
  guid?: string | null;
}

/**
 * Change a topic known at `revision`; null fields stay as they are, "" clears assignee / due_date.
 * title / description: own topics (`topic.edit_own`) or anyone's (`topic.moderate`); the rest:
 * `topic.update`.
 */
export interface TopicUpdate {
  type: "topic_update";
  guid: string;
  revision: number;
  title?: string | null;
  description?: string | null;
  status?: "closed" | "in_progress" | "open" | "resolved" | null;
  priority?: "critical" | "high" | "low" | "normal" | null;
  topic_type?: string | null;
  assignee?: string | null;
  labels?: string[] | null;
  due_date?: string | null;
  ref?: string | null;
}

export interface Transform {
  translate?: number[] | null;
  rotate?: number[] | null;
  scale?: number[] | null;
}

/**
 * Elements drawn see-through at `opacity` (1 = opaque), in their own colour.
 */
export interface TransparentComponents {
  opacity: number;
  ids: string[];
}

/**
 * Complete when element.prop is within [min, max] (either bound may be open).
 */
export interface ValueRange {
  element: string;
  prop: string;
  min?: number | null;
  max?: number | null;
}

export type Vec3 = [number, number, number, ...unknown[]];

/**
 * BCF's hints for showing IFC spaces, space boundaries and openings (all hidden by default).
 */
export interface ViewSetupHints {
  spaces_visible?: boolean;
  space_boundaries_visible?: boolean;
  openings_visible?: boolean;
}

/**
 * What the author saw: camera, section planes, and visible / selected / coloured / x-rayed / transparent
 * components (twin ids). An id of a container (a storey, an assembly) stands for everything under it.
 * X-ray ("ghosted": faint, grey, not pickable) works like visibility: `xray` lists the exceptions to
 * `xray_default`, so "x-ray everything but the pump" is `xray_default=True, xray=[pump]`.
 */
export interface Viewpoint {
  guid: string;
  camera: Camera;
  clipping_planes?: ClippingPlane[];
  selected?: string[];
  hidden?: string[];
  default_visible?: boolean;
  colored?: ColoredComponents[];
  xray?: string[];
  xray_default?: boolean;
  transparent?: TransparentComponents[];
  snapshot?: string | null;
  setup_hints?: ViewSetupHints | null;
  measurements?: Measurement[];
}

/**
 * What a viewer shows for one element in one layer; None = the model's own look.
 */
export interface Visual {
  color?: string | null;
  status?: "alarm" | "ok" | "warning" | null;
  visible?: boolean | null;
  transform?: Transform | null;
  label?: string | null;
  anomaly?: boolean | null;
  label_props?: string[] | null;
}

/**
 * A live value shown beside the step, e.g. the discharge pressure while a valve opens.
 */
export interface Watch {
  element: string;
  prop: string;
}

export interface Welcome {
  type: "welcome";
  session_id: string;
  server_epoch: string;
  seq: number;
  server_version: string;
  protocol: number;
  encoding: "json" | "msgpack";
  scene: string;
  layer: string;
  layers: string[];
  capabilities: string[];
  limits: Record<string, number>;
  session?: string;
  user?: string;
  role?: "admin" | "annotator" | "operator" | "presenter" | "publisher" | "viewer";
  name?: string;
  token?: string;
}

// The controllers' sticks and buttons, read once per XR frame from the session's input sources (WebXR's
// "xr-standard" gamepad mapping: buttons 0 trigger, 1 grip, 3 stick press, 4 A/X, 5 B/Y; axes 2-3 the
// thumbstick, 0-1 a touchpad on controllers without one). The trigger stays with three.js's select events.

const GRIP = 1;
const MENU = 5; // B on the right controller, Y on the left
const STICK_X = 2;
const TOUCHPAD_X = 0;

/**
 * @typedef {{source: XRInputSource, hand: XRHandedness, x: number, y: number, grip: boolean, menu: boolean,
 *            menuDown: boolean}} Pad a controller this frame: its stick (y < 0 is pushed forward), whether the
 *   grip and the menu button are held, and whether the menu button went down in this frame
 */

export class Pads {
  constructor() {
    /** @type {WeakMap<XRInputSource, boolean>} the menu button in the previous frame */
    this.menuBefore = new WeakMap();
  }

  /** The controllers with a gamepad, this frame. @param {XRSession} session @returns {Pad[]} */
  read(session) {
    /** @type {Pad[]} */
    const pads = [];
    for (const source of session.inputSources) {
      const gp = source.gamepad;
      if (!gp) continue;
      const ax = gp.axes.length > STICK_X + 1 ? STICK_X : TOUCHPAD_X;
      const menu = Boolean(gp.buttons[MENU]?.pressed);
      pads.push({ source, hand: source.handedness, x: finite(gp.axes[ax]), y: finite(gp.axes[ax + 1]),
        grip: Boolean(gp.buttons[GRIP]?.pressed), menu, menuDown: menu && !this.menuBefore.get(source) });
      this.menuBefore.set(source, menu);
    }
    return pads;
  }
}

/** A stick axis, 0 when the device sends none or nonsense. @param {number|undefined} v */
const finite = (v) => (typeof v === 'number' && Number.isFinite(v) ? Math.max(-1, Math.min(1, v)) : 0);

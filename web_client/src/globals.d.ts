// Globals the client's code reads that no library declares.

/** Defined `true` by esbuild in the bundle (build.mjs); undeclared in the unbundled development client. */
declare const TWINVIEW_BUNDLE: true | undefined;

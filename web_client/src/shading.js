// The cheap shading path for batched engineering models (xeokit's approach): Lambert diffuse from the
// viewer's hemisphere light and sun, evaluated per vertex; the fragment shader only interpolates a
// colour. glTF PBR (MeshStandardMaterial) evaluates a BRDF with several lights per pixel, which is what
// a software rasteriser (and a headset's fill rate) pays for most. Untextured, rough, non-metallic
// materials — what IFC/CAD exports are — look nearly the same: on flat faces per-vertex and per-pixel
// Lambert are equal; only the faint specular highlight is lost.
import * as THREE from 'three';

/** Texels per element in a MergedBatch's (and InstancedBatch's) data texture: colour, the 4 columns of its move
 * (an InstancedBatch: of its whole placement), transparency. */
export const ELEMENT_TEXELS = 6;

/** The lights as the viewer sets them up (Viewer uses these too, so both paths agree). */
export const LIGHTS = {
  sky: 0xffffff,
  ground: 0x445566,
  hemisphere: 1.4,
  sun: 0xffffff,
  sunIntensity: 1.4,
  sunPosition: new THREE.Vector3(5, 10, 7),
};

/**
 * GLSL for a MergedBatch's vertex shader (with mergedDefines): vertices are in the batch's frame; per element
 * (slot) ELEMENT_TEXELS texels: colour (a = 2: moved), the columns of the move applied on top of the baked
 * placement, then r = transparency (0: opaque).
 */
export const MERGED_VERTEX_PARS = /* glsl */ `
attribute float slot;
uniform highp sampler2D elementData;
vec4 elementTexel( const in int i ) {
  return texelFetch( elementData, ivec2( i & ( ELEMENT_TEXTURE_WIDTH - 1 ), i >> ELEMENT_TEXTURE_SHIFT ), 0 );
}
`;

/** The defines MERGED_VERTEX_PARS needs, for a batch's per-element texture. @param {THREE.Texture} elementData */
export const mergedDefines = (elementData) => ({ MERGED: '', ELEMENT_TEXELS, ELEMENT_TEXTURE_WIDTH: elementData.image.width,
  ELEMENT_TEXTURE_SHIFT: Math.log2(elementData.image.width) });

// Shared by every cheap material: light colours premultiplied by intensity, sun direction in world space.
const lightUniforms = {
  skyColor: { value: new THREE.Color(LIGHTS.sky).multiplyScalar(LIGHTS.hemisphere) },
  groundColor: { value: new THREE.Color(LIGHTS.ground).multiplyScalar(LIGHTS.hemisphere) },
  sunColor: { value: new THREE.Color(LIGHTS.sun).multiplyScalar(LIGHTS.sunIntensity) },
  sunDirection: { value: LIGHTS.sunPosition.clone().normalize() },
};

const vertexShader = /* glsl */ `
#include <common>
#include <batching_pars_vertex>
#include <clipping_planes_pars_vertex>
uniform vec3 diffuse;
uniform vec3 skyColor;
uniform vec3 groundColor;
uniform vec3 sunColor;
uniform vec3 sunDirection;
varying vec3 vFront;
#ifdef DOUBLE_SIDED
varying vec3 vBack;
#endif
#ifdef SECTION_CLIP_DISTANCE
// A section's stencil pass: its plane in view space, clipped as geometry (not per fragment).
uniform vec4 sectionPlane;
#endif
#ifdef MERGED
${MERGED_VERTEX_PARS}
varying float vAlpha;
#endif

// Lambert irradiance (already divided by pi, as three's BRDF_Lambert does) for a world-space normal.
vec3 irradiance( const in vec3 n ) {
  return ( mix( groundColor, skyColor, 0.5 * n.y + 0.5 ) + sunColor * max( dot( n, sunDirection ), 0.0 ) ) * RECIPROCAL_PI;
}

void main() {
  vec3 base = diffuse;
  #ifdef USE_COLOR
    base *= color.rgb;
  #endif
  vec3 objectNormal = normal;
  vec3 transformed = position;
  #ifdef MERGED
    int at = int( slot + 0.5 ) * ELEMENT_TEXELS;
    vec4 look = elementTexel( at );
    base *= look.rgb;
    vAlpha = 1.0 - elementTexel( at + 5 ).r;
    if ( look.a > 1.5 ) {
      mat4 move = mat4( elementTexel( at + 1 ), elementTexel( at + 2 ), elementTexel( at + 3 ), elementTexel( at + 4 ) );
      transformed = ( move * vec4( transformed, 1.0 ) ).xyz;
      // The inverse transpose for a rotation x (non-uniform) scale: an instance's placement can scale.
      mat3 mm = mat3( move );
      objectNormal = mm * ( objectNormal / vec3( dot( mm[ 0 ], mm[ 0 ] ), dot( mm[ 1 ], mm[ 1 ] ), dot( mm[ 2 ], mm[ 2 ] ) ) );
    }
    vec4 mvPosition = modelViewMatrix * vec4( transformed, 1.0 );
  #elif defined( USE_BATCHING )
    float batchIndex = getIndirectIndex( gl_DrawID );
    mat4 batchingMatrix = getBatchingMatrix( batchIndex );
    #ifdef USE_BATCHING_COLOR
      base *= getBatchingColor( batchIndex ).rgb;
    #endif
    mat3 bm = mat3( batchingMatrix );
    objectNormal = bm * ( objectNormal / vec3( dot( bm[ 0 ], bm[ 0 ] ), dot( bm[ 1 ], bm[ 1 ] ), dot( bm[ 2 ], bm[ 2 ] ) ) );
    vec4 mvPosition = modelViewMatrix * ( batchingMatrix * vec4( transformed, 1.0 ) );
  #else
    vec4 mvPosition = modelViewMatrix * vec4( transformed, 1.0 );
  #endif
  gl_Position = projectionMatrix * mvPosition;
  #include <clipping_planes_vertex>
  #ifdef SECTION_CLIP_DISTANCE
    gl_ClipDistance[ 0 ] = dot( mvPosition.xyz, sectionPlane.xyz ) + sectionPlane.w;
  #endif
  // World-space normal (the model matrix of a batch is the XR placement: rotation and uniform scale).
  vec3 n = normalize( mat3( modelMatrix ) * objectNormal );
  vFront = base * irradiance( n );
  #ifdef DOUBLE_SIDED
    vBack = base * irradiance( -n );
  #endif
}
`;

const fragmentShader = /* glsl */ `
uniform float opacity;
varying vec3 vFront;
#ifdef MERGED
varying float vAlpha;
#else
const float vAlpha = 1.0;
#endif
#ifdef DOUBLE_SIDED
varying vec3 vBack;
#endif
#include <clipping_planes_pars_fragment>
void main() {
  #include <clipping_planes_fragment>
  #ifdef DOUBLE_SIDED
    gl_FragColor = vec4( gl_FrontFacing ? vFront : vBack, opacity * vAlpha );
  #else
    gl_FragColor = vec4( vFront, opacity * vAlpha );
  #endif
  #include <colorspace_fragment>
}
`;

// `?shading=pbr` keeps the glTF materials on BatchedMeshes (the look and cost before this path), to compare.
const FORCE_PBR = typeof location !== 'undefined' && new URLSearchParams(location.search).get('shading') === 'pbr';

/**
 * Whether a glTF material can take the cheap path without looking different: no textures, not
 * emissive, not metallic.
 * @param {any} m
 */
export function canShadeCheaply(m) {
  if (FORCE_PBR) return false;
  if (!m || !(m.isMeshStandardMaterial || m.isMeshLambertMaterial || m.isMeshPhongMaterial || m.isMeshBasicMaterial)) return false;
  for (const k of ['map', 'normalMap', 'bumpMap', 'emissiveMap', 'roughnessMap', 'metalnessMap', 'aoMap', 'lightMap',
    'alphaMap', 'envMap', 'displacementMap']) if (m[k]) return false;
  if (m.emissive && m.emissive.getHex() !== 0) return false;
  return !(m.metalness > 0.5);
}

/** @typedef {THREE.ShaderMaterial & {color: THREE.Color}} CheapMaterial its `color` is the diffuse uniform */

/**
 * A per-vertex Lambert material with the source's colour, opacity, side and vertex colours.
 * @param {any} source @param {THREE.Texture|null} [elementData] for a MergedBatch: its per-element texture
 * @returns {CheapMaterial}
 */
export function cheapMaterial(source, elementData = null) {
  const m = new THREE.ShaderMaterial({
    defines: elementData ? mergedDefines(elementData) : {},
    name: `lambert-vs:${source.name || source.type}`,
    uniforms: {
      diffuse: { value: new THREE.Color().copy(source.color ?? new THREE.Color(1, 1, 1)) },
      opacity: { value: source.opacity ?? 1 },
      elementData: { value: elementData },
      ...lightUniforms,
    },
    vertexShader,
    fragmentShader,
    transparent: source.transparent,
    // An opaque material draws with blending off either way (three turns NormalBlending off for it), but as
    // NoBlending it shares the transparent ones' program: otherwise three builds a second program that
    // differs only by an OPAQUE define this shader never reads, and each program's first use waits for a
    // synchronous round trip to the GPU process.
    blending: source.transparent ? source.blending : THREE.NoBlending,
    opacity: source.opacity,
    side: source.side,
    vertexColors: source.vertexColors,
    depthWrite: source.depthWrite,
    depthTest: source.depthTest,
    alphaTest: source.alphaTest,
    polygonOffset: source.polygonOffset,
    polygonOffsetFactor: source.polygonOffsetFactor,
    polygonOffsetUnits: source.polygonOffsetUnits,
    clipping: true,
  });
  // Keep the `color` the batcher and tools expect on a material (it is the diffuse uniform).
  Object.defineProperty(m, 'color', { get: () => m.uniforms.diffuse.value });
  return /** @type {CheapMaterial} */ (m);
}

const stencilFragmentShader = /* glsl */ `
#include <clipping_planes_pars_fragment>
void main() {
  #include <clipping_planes_fragment>
  gl_FragColor = vec4( 0.0 );
}
`;

/**
 * A merged batch drawn into the stencil buffer only, cut by one section plane: every face (front or back)
 * inverts the stencil, so where a closed solid is cut open the count of faces behind the plane is odd — where
 * the cap goes (tools/section_caps.js). It shares the batch's uniforms (its per-element texture: moved
 * elements are where they are drawn) and vertex shader. With `clipDistance` (WEBGL_clip_cull_distance) the plane
 * clips triangles as geometry, so the part cut away is never rasterised (a software GL rasterises, then
 * discards, what a fragment-shader clip cuts away); the mesh must then call sectionPlaneForView before drawing.
 * @param {CheapMaterial} batchMaterial @param {THREE.Plane} plane world space (kept up to date by the section)
 * @param {boolean} clipDistance
 */
export function sectionStencilMaterial(batchMaterial, plane, clipDistance) {
  const m = new THREE.ShaderMaterial({
    name: 'section-stencil',
    defines: clipDistance ? { ...batchMaterial.defines, SECTION_CLIP_DISTANCE: '' } : batchMaterial.defines,
    uniforms: clipDistance ? { ...batchMaterial.uniforms, sectionPlane: { value: new THREE.Vector4() } } : batchMaterial.uniforms,
    vertexShader,
    fragmentShader: stencilFragmentShader,
    side: THREE.DoubleSide,
    colorWrite: false,
    depthWrite: false,
    depthTest: false,
    stencilWrite: true,
    stencilFunc: THREE.AlwaysStencilFunc,
    stencilFail: THREE.InvertStencilOp,
    stencilZFail: THREE.InvertStencilOp,
    stencilZPass: THREE.InvertStencilOp,
    clipping: !clipDistance,
    clippingPlanes: clipDistance ? null : [plane],
  });
  m.extensions.clipCullDistance = clipDistance;
  return m;
}

const _viewPlane = new THREE.Plane();

/**
 * Put a world-space plane into a clip-distance stencil material, in the view space of the camera about to draw.
 * @param {THREE.ShaderMaterial} material @param {THREE.Plane} plane @param {THREE.Camera} camera
 */
export function sectionPlaneForView(material, plane, camera) {
  const p = _viewPlane.copy(plane).applyMatrix4(camera.matrixWorldInverse);
  material.uniforms.sectionPlane.value.set(p.normal.x, p.normal.y, p.normal.z, p.constant);
  material.uniformsNeedUpdate = true;
}

// The radiology stack viewer: cornerstone3D StackViewport over WADO-RS frames.
//
// Frames are fetched as stored (`transfer-syntax=*`, HTJ2K for what tessel re-encoded) and decoded
// in the browser by the dicom-image-loader's WebAssembly codecs; `?transfer=native` asks tessel for
// Explicit VR Little Endian instead (the same pixels, decoded on the server).
import './style.css';
import {
  Enums, RenderingEngine, eventTarget, init as coreInit, utilities as coreUtilities,
} from '@cornerstonejs/core';
import {
  AngleTool, Enums as ToolEnums, LengthTool, PanTool, ProbeTool, RectangleROITool, StackScrollTool,
  ToolGroupManager, WindowLevelTool, ZoomTool, addTool, annotation, init as toolsInit, utilities as toolUtilities,
} from '@cornerstonejs/tools';
import { init as loaderInit, wadors } from '@cornerstonejs/dicom-image-loader';
import { authHeaders, requireToken } from './auth.js';
import { T, dicomwebBase, escapeHtml, first, formatDate, getJson, params, personName, values } from './dicomweb.js';

const NATIVE = '1.2.840.10008.1.2.1';
const SYNTAX_NAMES = {
  '1.2.840.10008.1.2.1': 'Explicit VR LE', '1.2.840.10008.1.2': 'Implicit VR LE',
  '1.2.840.10008.1.2.4.201': 'HTJ2K lossless', '1.2.840.10008.1.2.4.202': 'HTJ2K lossless RPCL',
  '1.2.840.10008.1.2.4.203': 'HTJ2K', '1.2.840.10008.1.2.4.90': 'JPEG 2000 lossless',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000', '1.2.840.10008.1.2.4.50': 'JPEG baseline',
  '1.2.840.10008.1.2.4.70': 'JPEG lossless', '1.2.840.10008.1.2.4.80': 'JPEG-LS lossless',
  '1.2.840.10008.1.2.5': 'RLE',
};
const CT_PRESETS = [
  ['Soft tissue', 400, 40], ['Lung', 1500, -600], ['Bone', 1800, 400], ['Brain', 80, 40],
  ['Liver', 150, 30], ['Mediastinum', 350, 50],
];
const TOOL_NAMES = {
  WindowLevel: WindowLevelTool.toolName, Pan: PanTool.toolName, Zoom: ZoomTool.toolName,
  Length: LengthTool.toolName, Angle: AngleTool.toolName, Probe: ProbeTool.toolName,
  RectangleROI: RectangleROITool.toolName,
};
const $ = (selector) => document.querySelector(selector);
const query = params();
const nativeMode = query.transfer === 'native';

// What the page exposes for tests and the benchmark (read-only use).
const stack = window.tesselStack = {
  ready: false, firstImageMs: null, imageIds: [], errors: [], viewport: null, lastTransferSyntax: null,
};

function fail(message) {
  stack.errors.push(message);
  const box = $('#message');
  box.textContent = message;
  box.hidden = false;
}

/** Instances (and frames) in display order: along the slice normal when positions exist. */
function orderedImageIds(instances, base) {
  const iop = values(instances[0], T.ImageOrientationPatient);
  let key = (item) => first(item, T.InstanceNumber, 0);
  if (iop.length === 6 && instances.every((item) => values(item, T.ImagePositionPatient).length === 3)) {
    const [r0, r1, r2, c0, c1, c2] = iop;
    const normal = [r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0];
    key = (item) => values(item, T.ImagePositionPatient).reduce((sum, v, i) => sum + v * normal[i], 0);
  }
  const sorted = [...instances].sort((a, b) => key(a) - key(b));
  const ids = [];
  for (const item of sorted) {
    const sop = first(item, T.SOPInstanceUID);
    const prefix = `wadors:${base}/studies/${query.study}/series/${query.series}/instances/${sop}/frames/`;
    const frames = Number(first(item, T.NumberOfFrames, 1)) || 1;
    wadors.metaDataManager.add(`${prefix}1`, item); // other frames' metadata is looked up through frame 1
    for (let n = 1; n <= frames; n += 1) ids.push(`${prefix}${n}`);
  }
  return ids;
}

function voiToWindow(voi) {
  const { windowWidth, windowCenter } = coreUtilities.windowLevel.toWindowLevel(voi.lower, voi.upper);
  return { width: windowWidth, center: windowCenter };
}

function setWindow(viewport, width, center) {
  viewport.setProperties({ voiRange: coreUtilities.windowLevel.toLowHighRange(width, center) });
  viewport.render();
}

function buildPresets(viewport, item) {
  const presets = [];
  const centers = values(item, T.WindowCenter);
  const widths = values(item, T.WindowWidth);
  const names = values(item, T.WindowCenterWidthExplanation);
  centers.forEach((c, i) => {
    if (widths[i] !== undefined) presets.push([names[i] || `Window ${i + 1}`, Number(widths[i]), Number(c)]);
  });
  if (first(item, T.Modality) === 'CT') {
    for (const p of CT_PRESETS) {
      if (!presets.some(([name]) => name.toLowerCase() === p[0].toLowerCase())) presets.push(p);
    }
  }
  const holder = $('#presets');
  holder.innerHTML = '';
  presets.forEach(([name, width, center], i) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = name;
    button.dataset.preset = name.toLowerCase();
    button.title = `W ${width} / L ${center}` + (i < 9 ? ` (key ${i + 1})` : '');
    button.addEventListener('click', () => setWindow(viewport, width, center));
    holder.append(button);
  });
  document.addEventListener('keydown', (event) => {
    const n = Number(event.key);
    if (n >= 1 && n <= presets.length && !event.ctrlKey && !event.metaKey) {
      setWindow(viewport, presets[n - 1][1], presets[n - 1][2]);
    }
  });
}

function updateOverlay(viewport) {
  const index = viewport.getCurrentImageIdIndex();
  const count = stack.imageIds.length;
  const props = viewport.getProperties();
  const lines = [`Im ${index + 1} / ${count}`];
  if (props.voiRange) {
    const { width, center } = voiToWindow(props.voiRange);
    lines.push(`W ${Math.round(width)} L ${Math.round(center)}`);
  }
  $('#overlay-bl').innerHTML = lines.map(escapeHtml).join('<br>');
  const zoom = viewport.getZoom ? viewport.getZoom() : 1;
  const syntax = stack.lastTransferSyntax;
  $('#overlay-br').innerHTML = [`Zoom ${Math.round(zoom * 100)}%`,
    syntax ? (SYNTAX_NAMES[syntax] || syntax) : ''].map(escapeHtml).join('<br>');
  $('#slider').value = String(index);
}

function setActiveTool(group, name) {
  for (const tool of Object.values(TOOL_NAMES)) {
    if (tool === TOOL_NAMES.Pan || tool === TOOL_NAMES.Zoom) continue;
    group.setToolPassive(tool);
  }
  const primary = [{ mouseButton: ToolEnums.MouseBindings.Primary }];
  if (name === 'Pan' || name === 'Zoom') {
    group.setToolActive(TOOL_NAMES[name], { bindings: [...primary, { mouseButton: name === 'Pan' ? ToolEnums.MouseBindings.Auxiliary : ToolEnums.MouseBindings.Secondary }] });
  } else {
    group.setToolActive(TOOL_NAMES.Pan, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Auxiliary }] });
    group.setToolActive(TOOL_NAMES.Zoom, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Secondary }] });
    group.setToolActive(TOOL_NAMES[name], { bindings: primary });
  }
  for (const button of document.querySelectorAll('#tools [data-tool]')) {
    button.classList.toggle('active', button.dataset.tool === name);
  }
}

function setUpTools(viewportId, renderingEngineId) {
  for (const tool of [WindowLevelTool, PanTool, ZoomTool, StackScrollTool, LengthTool, AngleTool, ProbeTool,
    RectangleROITool]) addTool(tool);
  const group = ToolGroupManager.createToolGroup('stack');
  for (const name of Object.values(TOOL_NAMES)) group.addTool(name);
  group.addTool(StackScrollTool.toolName);
  group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Wheel }] });
  group.addViewport(viewportId, renderingEngineId);
  setActiveTool(group, 'WindowLevel');
  for (const button of document.querySelectorAll('#tools [data-tool]')) {
    button.addEventListener('click', () => setActiveTool(group, button.dataset.tool));
  }
  return group;
}

function keyboard(viewport) {
  document.addEventListener('keydown', (event) => {
    if (event.target instanceof HTMLInputElement && event.target.type !== 'range') return;
    const index = viewport.getCurrentImageIdIndex();
    const last = stack.imageIds.length - 1;
    const step = { ArrowUp: -1, ArrowLeft: -1, ArrowDown: 1, ArrowRight: 1, PageUp: -10, PageDown: 10 }[event.key];
    let target = null;
    if (step !== undefined) target = Math.min(last, Math.max(0, index + step));
    else if (event.key === 'Home') target = 0;
    else if (event.key === 'End') target = last;
    else if (event.key === 'r' || event.key === 'R') reset(viewport);
    else if (event.key === ' ') $('#cine').click();
    if (target !== null) {
      event.preventDefault();
      viewport.setImageIdIndex(target);
    }
  });
}

function reset(viewport) {
  viewport.resetCamera();
  viewport.resetProperties();
  viewport.render();
}

async function main() {
  requireToken();
  if (!query.datastore || !query.study || !query.series) {
    fail('Open a series from the study list (datastore, study and series are missing).');
    return;
  }
  const base = dicomwebBase(query.datastore);
  $('#mode').textContent = nativeMode ? 'frames: uncompressed (server-decoded)' : 'frames: as stored';
  coreInit();
  toolsInit();
  loaderInit({
    maxWebWorkers: Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1)),
    beforeSend: () => ({
      ...authHeaders(),
      ...(nativeMode ? { Accept: `multipart/related; type="application/octet-stream"; transfer-syntax=${NATIVE}` } : {}),
    }),
  });
  eventTarget.addEventListener(Enums.Events.IMAGE_LOAD_FAILED, (event) => {
    const { error } = event.detail;
    fail(`A frame failed to load: ${error?.status || ''} ${error?.message || ''}`.trim());
  });

  const instances = await getJson(`${base}/studies/${query.study}/series/${query.series}/metadata`,
    { headers: { Accept: 'application/dicom+json' } });
  if (!instances?.length) {
    fail('This series has no instances.');
    return;
  }
  const item = instances[0];
  stack.imageIds = orderedImageIds(instances.filter((i) => first(i, T.Rows)), base);
  if (!stack.imageIds.length) {
    fail('This series holds no images.');
    return;
  }
  document.title = `tessel · ${personName(item, T.PatientName)} · ${first(item, T.SeriesDescription, '')}`;
  $('#overlay-tl').innerHTML = [personName(item, T.PatientName), first(item, T.PatientID, ''),
    formatDate(first(item, T.StudyDate)), first(item, T.StudyDescription, '')].map(escapeHtml).join('<br>');
  $('#overlay-tr').innerHTML = [`${first(item, T.Modality, '')} #${first(item, T.SeriesNumber, '')}`,
    first(item, T.SeriesDescription, '')].map(escapeHtml).join('<br>');

  const element = $('#viewport');
  const engine = new RenderingEngine('tessel');
  const viewportId = 'stack';
  engine.enableElement({ viewportId, type: Enums.ViewportType.STACK, element,
    defaultOptions: { background: [0, 0, 0] } });
  const viewport = engine.getViewport(viewportId);
  stack.viewport = viewport;
  setUpTools(viewportId, engine.id);
  buildPresets(viewport, item);
  keyboard(viewport);

  const slider = $('#slider');
  slider.max = String(stack.imageIds.length - 1);
  slider.addEventListener('input', () => viewport.setImageIdIndex(Number(slider.value)));
  $('#reset').addEventListener('click', () => reset(viewport));
  $('#clear').addEventListener('click', () => {
    annotation.state.removeAllAnnotations();
    viewport.render();
  });
  if (stack.imageIds.length > 1 && Number(first(item, T.NumberOfFrames, 1)) > 1) {
    const cine = $('#cine');
    cine.hidden = false;
    let playing = false;
    cine.addEventListener('click', () => {
      playing = !playing;
      if (playing) toolUtilities.cine.playClip(element, { framesPerSecond: Number(first(item, '00082144', 20)) || 20, loop: true });
      else toolUtilities.cine.stopClip(element);
      cine.textContent = playing ? '⏸ Cine' : '▶ Cine';
    });
  }

  element.addEventListener(Enums.Events.IMAGE_RENDERED, () => {
    const image = viewport.getCornerstoneImage?.();
    if (!image) return; // a render before the first image arrived
    stack.renderedImageId = image.imageId;
    if (image.transferSyntaxUID) stack.lastTransferSyntax = image.transferSyntaxUID;
    if (!stack.ready) {
      stack.ready = true;
      stack.firstImageMs = performance.now();
      document.body.dataset.ready = 'true';
    }
    updateOverlay(viewport);
  });
  window.addEventListener('resize', () => engine.resize(true, true));
  await viewport.setStack(stack.imageIds, 0);
  viewport.render();
  toolUtilities.stackPrefetch.enable(element);
}

main().catch((error) => fail(`The viewer could not start: ${error.message || error}`));

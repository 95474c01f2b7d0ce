// The whole-slide viewer: OpenSeadragon over the pyramid levels of a VL Whole Slide Microscopy series,
// each tile one WADO-RS frame, and pathology bookmarks (a named region on one level) kept by tessel.
import './style.css';
import OpenSeadragon from 'openseadragon';
import { authHeaders, requireToken } from './auth.js';
import {
  T, WSI_SOP_CLASS, dicomwebBase, escapeHtml, first, getJson, params, personName, request, values,
} from './dicomweb.js';

const JPEG_SYNTAXES = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51']);
const $ = (selector) => document.querySelector(selector);
const query = params();

// What the page exposes for tests and the benchmark (read-only use).
const slide = window.tesselSlide = {
  ready: false, tilesLoaded: 0, tilesFailed: 0, levelsLoaded: {}, firstFullScreenMs: null, levels: [],
  viewer: null, currentRegion: null, openedBookmark: null,
};

function fail(message) {
  const box = $('#message');
  box.textContent = message;
  box.hidden = false;
}

function item0(seq) {
  return seq?.Value?.[0];
}

/** frame number for each (column, row) tile of the first focal plane and optical path. */
function tileFrames(instance, columns, tileWidth, tileHeight) {
  const organization = first(instance, T.DimensionOrganizationType);
  const perFrame = instance[T.PerFrameFunctionalGroupsSequence]?.Value;
  if (organization === 'TILED_FULL' || !perFrame) return null; // frames in row-major order
  const map = new Map();
  perFrame.forEach((frame, index) => {
    const position = item0(frame[T.PlanePositionSlideSequence]);
    if (!position) return;
    const column = (first(position, T.ColumnPositionInTotalImagePixelMatrix) - 1) / tileWidth;
    const row = (first(position, T.RowPositionInTotalImagePixelMatrix) - 1) / tileHeight;
    const key = row * columns + column;
    if (!map.has(key)) map.set(key, index + 1);
  });
  return map;
}

/** The pyramid, largest level first (level 0 = full resolution), as bookmarks number it. */
function pyramid(instances) {
  const bySize = new Map();
  for (const instance of instances) {
    if (first(instance, T.SOPClassUID) !== WSI_SOP_CLASS) continue;
    const type = values(instance, T.ImageType);
    if (type.length > 2 && type[2] !== 'VOLUME' && type[2] !== '') continue; // label, overview, thumbnail
    const width = Number(first(instance, T.TotalPixelMatrixColumns) || first(instance, T.Columns));
    const height = Number(first(instance, T.TotalPixelMatrixRows) || first(instance, T.Rows));
    const key = `${width}x${height}`;
    if (!width || !height || bySize.has(key)) continue;
    const tileWidth = Number(first(instance, T.Columns));
    const tileHeight = Number(first(instance, T.Rows));
    const columns = Math.ceil(width / tileWidth);
    bySize.set(key, {
      sop: first(instance, T.SOPInstanceUID), width, height, tileWidth, tileHeight, columns,
      rows: Math.ceil(height / tileHeight), frames: tileFrames(instance, columns, tileWidth, tileHeight),
      syntax: first(instance, T.TransferSyntaxUID), spacing: pixelSpacing(instance),
    });
  }
  return [...bySize.values()].sort((a, b) => b.width * b.height - a.width * a.height);
}

function pixelSpacing(instance) {
  const shared = item0(instance[T.SharedFunctionalGroupsSequence]);
  const measures = item0(shared?.[T.PixelMeasuresSequence]);
  const spacing = values(measures, T.PixelSpacing);
  return spacing.length ? Number(spacing[1]) : null; // mm per pixel, across
}

function frameNumber(level, column, row) {
  const index = row * level.columns + column;
  if (!level.frames) return index + 1;
  return level.frames.get(index) ?? null;
}

function tileSource(levels, base) {
  const n = levels.length;
  const full = levels[0];
  const at = (osdLevel) => levels[n - 1 - osdLevel]; // OpenSeadragon counts up from the smallest
  const instanceUrl = (level) => `${base}/studies/${query.study}/series/${query.series}/instances/${level.sop}`;
  return new OpenSeadragon.TileSource({
    width: full.width,
    height: full.height,
    tileWidth: full.tileWidth,
    tileHeight: full.tileHeight,
    tileOverlap: 0,
    minLevel: 0,
    maxLevel: n - 1,
    getLevelScale: (osdLevel) => (osdLevel < 0 || osdLevel >= n ? 0 : at(osdLevel).width / full.width),
    getNumTiles: (osdLevel) => new OpenSeadragon.Point(at(osdLevel).columns, at(osdLevel).rows),
    getTileWidth: (osdLevel) => at(osdLevel).tileWidth,
    getTileHeight: (osdLevel) => at(osdLevel).tileHeight,
    tileExists: (osdLevel, x, y) => frameNumber(at(osdLevel), x, y) !== null,
    getTileUrl: (osdLevel, x, y) => {
      const level = at(osdLevel);
      const frame = frameNumber(level, x, y);
      // JPEG tiles go to the browser as stored; other syntaxes are rendered to JPEG by tessel.
      return JPEG_SYNTAXES.has(level.syntax)
        ? `${instanceUrl(level)}/frames/${frame}`
        : `${instanceUrl(level)}/frames/${frame}/rendered`;
    },
    getTileAjaxHeaders: () => ({ Accept: 'image/jpeg' }),
  });
}

/** The visible region as a bookmark: the smallest level that still shows every screen pixel. */
function visibleRegion(viewer, levels) {
  const viewport = viewer.viewport;
  const image = viewport.viewportToImageRectangle(viewport.getBounds(true));
  const full = levels[0];
  const x0 = Math.max(0, image.x);
  const y0 = Math.max(0, image.y);
  const x1 = Math.min(full.width, image.x + image.width);
  const y1 = Math.min(full.height, image.y + image.height);
  const screenPerImage = viewport.viewportToImageZoom(viewport.getZoom(true)) * (window.devicePixelRatio || 1);
  let level = 0;
  levels.forEach((candidate, k) => {
    if (candidate.width / full.width >= screenPerImage * 0.999) level = k;
  });
  const s = levels[level].width / full.width;
  const x = Math.floor(x0 * s);
  const y = Math.floor(y0 * s);
  return {
    level,
    region: {
      x, y,
      width: Math.max(1, Math.min(levels[level].width, Math.round(x1 * s)) - x),
      height: Math.max(1, Math.min(levels[level].height, Math.round(y1 * s)) - y),
    },
  };
}

function showRegion(viewer, levels, bookmark) {
  const s = levels[bookmark.level].width / levels[0].width;
  const { x, y, width, height } = bookmark.region;
  const rect = new OpenSeadragon.Rect(x / s, y / s, width / s, height / s);
  viewer.viewport.fitBounds(viewer.viewport.imageToViewportRectangle(rect), true);
}

function bookmarksUrl() {
  return `/viewer/api/datastores/${encodeURIComponent(query.datastore)}/studies/${encodeURIComponent(query.study)}/bookmarks`;
}

async function refreshBookmarks(viewer, levels) {
  const { bookmarks } = await getJson(`${bookmarksUrl()}?series=${encodeURIComponent(query.series)}`);
  const list = $('#bookmarks');
  list.innerHTML = '';
  for (const b of bookmarks) {
    const entry = document.createElement('li');
    entry.dataset.bookmark = b.bookmarkId;
    entry.innerHTML = `<button type="button" class="link">${escapeHtml(b.name)}</button>
      <span class="muted">level ${b.level} · ${b.region.width}×${b.region.height} px</span>
      <p>${escapeHtml(b.note)}</p>
      <button type="button" class="delete" title="Delete this bookmark">✕</button>`;
    entry.querySelector('.link').addEventListener('click', () => {
      showRegion(viewer, levels, b);
      slide.openedBookmark = b.bookmarkId;
      history.replaceState(null, '', `?${new URLSearchParams({ ...query, bookmark: b.bookmarkId })}`);
    });
    entry.querySelector('.delete').addEventListener('click', async () => {
      if (!confirm(`Delete the bookmark “${b.name}”?`)) return;
      await request(`${bookmarksUrl()}/${b.bookmarkId}`, { method: 'DELETE' });
      await refreshBookmarks(viewer, levels);
    });
    list.append(entry);
  }
  return bookmarks;
}

function trackLoading(viewer, levels) {
  const n = levels.length;
  viewer.addHandler('tile-loaded', (event) => {
    slide.tilesLoaded += 1;
    const level = n - 1 - event.tile.level;
    slide.levelsLoaded[level] = (slide.levelsLoaded[level] || 0) + 1;
  });
  viewer.addHandler('tile-load-failed', (event) => {
    slide.tilesFailed += 1;
    fail(`A tile failed to load: ${event.message || 'unknown error'}`);
  });
  // "A full screen of tiles": every tile the current view needs is drawn at its best level.
  viewer.addHandler('update-viewport', () => {
    const item = viewer.world.getItemAt(0);
    const full = Boolean(item && item.getFullyLoaded());
    if (full && slide.firstFullScreenMs === null) slide.firstFullScreenMs = performance.now();
    slide.fullyLoaded = full;
  });
}

function showPosition(viewer, levels) {
  const update = () => {
    const current = visibleRegion(viewer, levels);
    slide.currentRegion = current;
    const zoom = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
    const spacing = levels[0].spacing;
    const field = spacing ? ` · field ${(current.region.width / (levels[current.level].width / levels[0].width) * spacing).toFixed(2)} mm` : '';
    $('#position').textContent = `zoom ${(zoom * 100).toFixed(zoom < 0.1 ? 1 : 0)}% · level ${current.level} of ${levels.length - 1}${field}`;
  };
  viewer.addHandler('animation', update);
  viewer.addHandler('animation-finish', update);
  viewer.addHandler('open', update);
}

async function main() {
  requireToken();
  if (!query.datastore || !query.study || !query.series) {
    fail('Open a slide from the study list (datastore, study and series are missing).');
    return;
  }
  const base = dicomwebBase(query.datastore);
  const instances = await getJson(`${base}/studies/${query.study}/series/${query.series}/metadata`,
    { headers: { Accept: 'application/dicom+json' } });
  const levels = pyramid(instances || []);
  if (!levels.length) {
    fail('This series has no whole-slide pyramid levels (VL Whole Slide Microscopy VOLUME images).');
    return;
  }
  slide.levels = levels.map(({ sop, width, height, tileWidth, tileHeight, syntax }) => ({ sop, width, height, tileWidth, tileHeight, syntax }));
  const item = instances[0];
  $('#title').textContent = `${personName(item, T.PatientName)} · ${first(item, T.SeriesDescription, '') || 'slide'} · ${levels[0].width}×${levels[0].height} px, ${levels.length} levels`;
  document.title = `tessel · ${$('#title').textContent}`;

  const viewer = OpenSeadragon({
    element: $('#slide'),
    prefixUrl: '/viewer/osd-images/',
    tileSources: tileSource(levels, base),
    drawer: 'canvas', // plain 2D canvas: fast enough for tiles, and works without a GPU
    loadTilesWithAjax: true,
    ajaxHeaders: authHeaders(),
    showNavigator: true,
    navigatorPosition: 'BOTTOM_RIGHT',
    showNavigationControl: false,
    maxZoomPixelRatio: 4,
    visibilityRatio: 0.5,
    imageLoaderLimit: 8,
    timeout: 60000,
    immediateRender: false,
    animationTime: 0.6,
  });
  slide.viewer = viewer;
  slide.showImageRect = (x, y, width, height) => viewer.viewport.fitBounds(
    viewer.viewport.imageToViewportRectangle(new OpenSeadragon.Rect(x, y, width, height)), true);
  trackLoading(viewer, levels);
  showPosition(viewer, levels);

  await new Promise((resolve) => viewer.addOnceHandler('open', resolve));
  const bookmarks = await refreshBookmarks(viewer, levels);
  if (query.bookmark) {
    const wanted = bookmarks.find((b) => b.bookmarkId === query.bookmark);
    if (wanted) {
      showRegion(viewer, levels, wanted);
      slide.openedBookmark = wanted.bookmarkId;
    } else {
      fail('That bookmark no longer exists.');
    }
  }
  slide.ready = true;
  document.body.dataset.ready = 'true';

  $('#save').addEventListener('submit', async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const { level, region } = visibleRegion(viewer, levels);
    const body = { seriesInstanceUID: query.series, level, region, name: form.get('name'), note: form.get('note') };
    try {
      const response = await request(bookmarksUrl(), {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
      });
      const saved = await response.json();
      $('#save-status').textContent = `Saved “${saved.name}”.`;
      $('#save-status').dataset.bookmark = saved.bookmarkId;
      event.target.reset();
      await refreshBookmarks(viewer, levels);
    } catch (error) {
      $('#save-status').textContent = `Not saved: ${error.message}`;
    }
  });
}

main().catch((error) => fail(`The slide viewer could not start: ${error.message || error}`));

// The study browser: sign-in, QIDO-RS study search with paging, series with thumbnails, bookmarks.
import './style.css';
import { getToken, setToken, signIn, signOut, tokenExpiry } from './auth.js';
import {
  HttpError, T, WSI_SOP_CLASS, dicomwebBase, escapeHtml, first, formatDate, getJson, params, personName,
  request, values,
} from './dicomweb.js';

const $ = (selector) => document.querySelector(selector);
const state = { datastore: null, page: 0, limit: 25, query: {}, more: false };
const thumbnails = new IntersectionObserver(loadThumbnails, { rootMargin: '200px' });

function showSignIn(message = '') {
  $('#sign-in').hidden = false;
  $('#studies').hidden = true;
  $('#sign-out').hidden = true;
  $('#who').textContent = '';
  $('#sign-in-error').textContent = message;
}

function afterSignIn() {
  const next = params().next;
  if (next && next.startsWith('/viewer/')) {
    location.assign(next);
    return true;
  }
  return false;
}

async function start() {
  if (!getToken()) {
    showSignIn();
    return;
  }
  if (afterSignIn()) return;
  let listed;
  try {
    listed = (await getJson('/viewer/api/datastores')).datastores;
  } catch (error) {
    if (error instanceof HttpError && error.status === 401) {
      signOut();
      showSignIn('Your sign-in has expired or was revoked; sign in again.');
      return;
    }
    throw error;
  }
  $('#sign-in').hidden = true;
  $('#studies').hidden = false;
  $('#sign-out').hidden = false;
  const expiry = tokenExpiry(getToken());
  $('#who').textContent = expiry ? `signed in until ${new Date(expiry).toLocaleString()}` : 'signed in';
  const select = $('#datastore');
  select.innerHTML = listed
    .map((d) => `<option value="${escapeHtml(d.datastoreId)}">${escapeHtml(d.datastoreName)}</option>`)
    .join('');
  if (!listed.length) {
    $('#status').textContent = 'This key may not search any datastore.';
    return;
  }
  const wanted = params().datastore || localStorage.getItem('tessel.datastore');
  if (listed.some((d) => d.datastoreId === wanted)) select.value = wanted;
  state.datastore = select.value;
  await search(0);
}

function readQuery() {
  const form = new FormData($('#search'));
  const q = {};
  const name = form.get('name').trim();
  if (name) q.PatientName = /[*?]/.test(name) ? name : `${name}*`;
  const pid = form.get('pid').trim();
  if (pid) q.PatientID = pid;
  const from = form.get('from').replace(/-/g, '');
  const to = form.get('to').replace(/-/g, '');
  if (from || to) q.StudyDate = from === to ? from : `${from}-${to}`;
  if (form.get('modality')) q.ModalitiesInStudy = form.get('modality');
  state.limit = Number(form.get('limit'));
  return q;
}

async function search(page) {
  state.page = page;
  const url = new URL(`${dicomwebBase(state.datastore)}/studies`);
  for (const [k, v] of Object.entries(state.query)) url.searchParams.set(k, v);
  for (const tag of [T.StudyDescription, T.ModalitiesInStudy, T.NumberOfStudyRelatedSeries,
    T.NumberOfStudyRelatedInstances]) url.searchParams.append('includefield', tag);
  url.searchParams.set('limit', String(state.limit));
  url.searchParams.set('offset', String(page * state.limit));
  $('#status').textContent = 'Searching…';
  let studies;
  try {
    const response = await request(url, { headers: { Accept: 'application/dicom+json' } });
    state.more = (response.headers.get('Warning') || '').includes('additional results');
    studies = response.status === 204 ? [] : await response.json();
  } catch (error) {
    $('#status').textContent = `Search failed: ${error.message}`;
    return;
  }
  renderStudies(studies);
  const shown = studies.length;
  $('#status').textContent = shown ? '' : 'No studies match.';
  $('#page').textContent = shown ? `${page * state.limit + 1}–${page * state.limit + shown}` : '';
  $('#prev').disabled = page === 0;
  $('#next').disabled = !state.more;
}

function renderStudies(studies) {
  const body = $('#study-table tbody');
  body.innerHTML = '';
  for (const study of studies) {
    const uid = first(study, T.StudyInstanceUID);
    const row = document.createElement('tr');
    row.className = 'study';
    row.dataset.study = uid;
    row.tabIndex = 0;
    row.innerHTML = [
      personName(study, T.PatientName), first(study, T.PatientID, ''), formatDate(first(study, T.PatientBirthDate)),
      formatDate(first(study, T.StudyDate)), first(study, T.StudyDescription, ''),
      values(study, T.ModalitiesInStudy).join(', '), first(study, T.AccessionNumber, ''),
      first(study, T.NumberOfStudyRelatedSeries, ''), first(study, T.NumberOfStudyRelatedInstances, ''),
    ].map((v) => `<td>${escapeHtml(v)}</td>`).join('');
    const toggle = () => toggleSeries(row, uid);
    row.addEventListener('click', toggle);
    row.addEventListener('keydown', (e) => { if (e.key === 'Enter') toggle(); });
    body.append(row);
  }
}

function viewerLink(study, seriesItem) {
  const series = first(seriesItem, T.SeriesInstanceUID);
  const page = first(seriesItem, T.Modality) === 'SM' ? 'slide.html' : 'stack.html';
  const q = new URLSearchParams({ datastore: state.datastore, study, series });
  return `/viewer/${page}?${q}`;
}

async function toggleSeries(row, study) {
  const open = row.nextElementSibling;
  if (open && open.classList.contains('series-row')) {
    open.remove();
    return;
  }
  const detail = document.createElement('tr');
  detail.className = 'series-row';
  detail.innerHTML = `<td colspan="9"><div class="series-list">Loading series…</div></td>`;
  row.after(detail);
  const holder = detail.querySelector('.series-list');
  let series;
  try {
    series = await getJson(`${dicomwebBase(state.datastore)}/studies/${study}/series`,
      { headers: { Accept: 'application/dicom+json' } }) || [];
  } catch (error) {
    holder.textContent = `Could not list the series: ${error.message}`;
    return;
  }
  series.sort((a, b) => (first(a, T.SeriesNumber, 0) - first(b, T.SeriesNumber, 0)));
  holder.innerHTML = '';
  for (const item of series) {
    const uid = first(item, T.SeriesInstanceUID);
    const card = document.createElement('a');
    card.className = 'series';
    card.href = viewerLink(study, item);
    card.dataset.series = uid;
    card.innerHTML = `<img alt="" width="128" height="128" data-src="${dicomwebBase(state.datastore)}/studies/${study}/series/${uid}/thumbnail">
      <span class="label">${escapeHtml(first(item, T.Modality, ''))} #${escapeHtml(first(item, T.SeriesNumber, ''))}</span>
      <span>${escapeHtml(first(item, T.SeriesDescription, ''))}</span>
      <span class="muted">${escapeHtml(first(item, T.NumberOfSeriesRelatedInstances, '?'))} instances</span>`;
    holder.append(card);
    thumbnails.observe(card.querySelector('img'));
  }
  if (series.some((s) => first(s, T.Modality) === 'SM')) await listBookmarks(holder, study);
}

async function listBookmarks(holder, study) {
  const box = document.createElement('div');
  box.className = 'bookmarks';
  holder.append(box);
  try {
    const { bookmarks } = await getJson(
      `/viewer/api/datastores/${state.datastore}/studies/${study}/bookmarks`);
    if (!bookmarks.length) {
      box.innerHTML = '<span class="muted">No slide bookmarks yet.</span>';
      return;
    }
    box.innerHTML = '<h3>Slide bookmarks</h3>' + bookmarks.map((b) => {
      const q = new URLSearchParams({ datastore: state.datastore, study, series: b.seriesInstanceUID,
        bookmark: b.bookmarkId });
      return `<a class="bookmark" href="/viewer/slide.html?${q}">${escapeHtml(b.name)}</a>
        <span class="muted">${escapeHtml(b.note)}</span>`;
    }).join('<br>');
  } catch (error) {
    box.textContent = `Could not list bookmarks: ${error.message}`;
  }
}

async function loadThumbnails(entries) {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    const img = entry.target;
    thumbnails.unobserve(img);
    try {
      const response = await request(img.dataset.src, { headers: { Accept: 'image/jpeg' } });
      img.src = URL.createObjectURL(await response.blob());
      img.classList.add('loaded');
    } catch {
      img.classList.add('failed');
      img.alt = 'no thumbnail';
    }
  }
}

$('#key-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    await signIn(form.get('keyId').trim(), form.get('secret'));
    event.target.reset();
    await start();
  } catch (error) {
    $('#sign-in-error').textContent = error.message;
  }
});

$('#token-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  setToken(new FormData(event.target).get('token'));
  event.target.reset();
  await start();
});

$('#sign-out').addEventListener('click', () => {
  signOut();
  showSignIn();
});

$('#datastore').addEventListener('change', (event) => {
  state.datastore = event.target.value;
  localStorage.setItem('tessel.datastore', state.datastore);
  search(0);
});

$('#search').addEventListener('submit', (event) => {
  event.preventDefault();
  state.query = readQuery();
  search(0);
});
$('#prev').addEventListener('click', () => search(Math.max(0, state.page - 1)));
$('#next').addEventListener('click', () => search(state.page + 1));

start().catch((error) => {
  $('#status').textContent = `Error: ${error.message}`;
});

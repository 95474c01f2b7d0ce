// A small DICOMweb client over fetch: QIDO-RS searches, WADO-RS metadata, and DICOM JSON access.
import { authHeaders } from './auth.js';

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function request(url, { headers = {}, method = 'GET', body, signal } = {}) {
  const response = await fetch(url, { method, body, signal, headers: { ...authHeaders(), ...headers } });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const detail = await response.json();
      if (detail.message) message = detail.message;
    } catch {
      // not JSON: keep the status line
    }
    throw new HttpError(response.status, message);
  }
  return response;
}

export async function getJson(url, options) {
  const response = await request(url, { ...options, headers: { Accept: 'application/json', ...(options?.headers || {}) } });
  return response.status === 204 ? null : response.json();
}

export function dicomwebBase(datastoreId) {
  return `${location.origin}/datastore/${encodeURIComponent(datastoreId)}`;
}

/** The value(s) of a tag (8 hex digits) in a DICOM JSON object. */
export function values(item, tag) {
  const element = item?.[tag];
  return element?.Value ?? [];
}

export function first(item, tag, fallback = undefined) {
  const v = values(item, tag);
  return v.length ? v[0] : fallback;
}

export function personName(item, tag) {
  const v = first(item, tag);
  if (!v) return '';
  const text = v.Alphabetic || v.Ideographic || v.Phonetic || '';
  return text.replace(/\^+/g, ' ').trim();
}

export const T = {
  PatientName: '00100010',
  PatientID: '00100020',
  PatientBirthDate: '00100030',
  PatientSex: '00100040',
  StudyInstanceUID: '0020000D',
  StudyDate: '00080020',
  StudyTime: '00080030',
  StudyDescription: '00081030',
  AccessionNumber: '00080050',
  ModalitiesInStudy: '00080061',
  NumberOfStudyRelatedSeries: '00201206',
  NumberOfStudyRelatedInstances: '00201208',
  SeriesInstanceUID: '0020000E',
  SeriesNumber: '00200011',
  SeriesDescription: '0008103E',
  Modality: '00080060',
  NumberOfSeriesRelatedInstances: '00201209',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  InstanceNumber: '00200013',
  NumberOfFrames: '00280008',
  ImageType: '00080008',
  ImagePositionPatient: '00200032',
  ImageOrientationPatient: '00200037',
  Rows: '00280010',
  Columns: '00280011',
  TotalPixelMatrixColumns: '00480006',
  TotalPixelMatrixRows: '00480007',
  DimensionOrganizationType: '00209311',
  PerFrameFunctionalGroupsSequence: '52009230',
  PlanePositionSlideSequence: '0048021A',
  ColumnPositionInTotalImagePixelMatrix: '0048021E',
  RowPositionInTotalImagePixelMatrix: '0048021F',
  TransferSyntaxUID: '00020010',
  PixelSpacing: '00280030',
  SharedFunctionalGroupsSequence: '52009229',
  PixelMeasuresSequence: '00289110',
  WindowCenter: '00281050',
  WindowWidth: '00281051',
  WindowCenterWidthExplanation: '00281055',
  PhotometricInterpretation: '00280004',
};

export const WSI_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.77.1.6';

/** "20240131" -> "2024-01-31" */
export function formatDate(da) {
  return da && da.length === 8 ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : da || '';
}

export function params(search = location.search) {
  return Object.fromEntries(new URLSearchParams(search));
}

export function escapeHtml(text) {
  return String(text ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

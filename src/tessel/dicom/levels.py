"""Which level of the image set metadata document each top-level attribute belongs to.

The table follows AHI's `metadata-normalization.html` as summarised in spec
section 2 (modules of DICOM PS3.3, keys from PS3.6 2022b): Patient module with
the Issuer of Patient ID and Patient Group macros, and Clinical Trial Subject,
go to Patient; General Study, Patient Study and Clinical Trial Study to Study;
General Series, Clinical Trial Series, General Equipment and Frame of Reference
to Series. Everything else (File Meta group 0002, private and unknown tags,
Pixel Data) stays with the Instance.

Where the spec's list and PS3.3 differ, the spec wins: the Performed Procedure
Step Summary macro of General Series is not in AHI's Series list, so its
attributes stay at the instance level.

>>> level_of("PatientID"), level_of("StudyDate"), level_of("Modality"), level_of("00091001")
('patient', 'study', 'series', 'instance')
"""

from __future__ import annotations

from typing import Literal

Level = Literal["patient", "study", "series", "instance"]

PATIENT: frozenset[str] = frozenset({
    # Patient module
    "PatientName", "PatientID",
    # Issuer of Patient ID macro
    "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID", "PatientBirthDate", "PatientBirthDateInAlternativeCalendar",
    "PatientDeathDateInAlternativeCalendar", "PatientAlternativeCalendar", "PatientSex",
    "ReferencedPatientPhotoSequence", "QualityControlSubject", "ReferencedPatientSequence",
    "PatientBirthTime", "OtherPatientIDsSequence", "OtherPatientNames", "OtherPatientIDs",
    "EthnicGroup", "EthnicGroupCodeSequence", "PatientComments", "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "BreedRegistrationSequence", "StrainDescription", "StrainNomenclature", "StrainCodeSequence",
    "StrainAdditionalInformation", "StrainStockSequence", "GeneticModificationsSequence",
    "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    # Patient Group macro
    "SourcePatientGroupIdentificationSequence", "GroupOfPatientsIdentificationSequence",
    # Clinical Trial Subject module (0012,0010-0082)
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName",
    "IssuerOfClinicalTrialProtocolID", "OtherClinicalTrialProtocolIDsSequence",
    "ClinicalTrialSiteID", "ClinicalTrialSiteName", "IssuerOfClinicalTrialSiteID",
    "ClinicalTrialSubjectID", "IssuerOfClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
    "IssuerOfClinicalTrialSubjectReadingID", "ClinicalTrialProtocolEthicsCommitteeName",
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
})

STUDY: frozenset[str] = frozenset({
    # General Study module
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "RequestingServiceCodeSequence",
    "RequestingService", "ReferencedStudySequence", "ProcedureCodeSequence",
    "ReasonForPerformedProcedureCodeSequence",
    # Patient Study module
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "PatientAge", "PatientSize",
    "PatientWeight", "PatientBodyMassIndex", "MeasuredAPDimension", "MeasuredLateralDimension",
    "PatientSizeCodeSequence", "MedicalAlerts", "Allergies", "SmokingStatus", "PregnancyStatus",
    "LastMenstrualDate", "PatientState", "Occupation", "AdditionalPatientHistory", "AdmissionID",
    "IssuerOfAdmissionIDSequence", "ReasonForVisit", "ReasonForVisitCodeSequence",
    "ServiceEpisodeID", "IssuerOfServiceEpisodeIDSequence", "ServiceEpisodeDescription",
    "PatientSexNeutered",
    # Clinical Trial Study module
    "ClinicalTrialTimePointID", "IssuerOfClinicalTrialTimePointID",
    "ClinicalTrialTimePointDescription", "ClinicalTrialTimePointTypeCodeSequence",
    "LongitudinalTemporalOffsetFromEvent", "LongitudinalTemporalEventType",
    "ConsentForClinicalTrialUseSequence",
})

SERIES: frozenset[str] = frozenset({
    # General Series module
    "Modality", "SeriesInstanceUID", "SeriesNumber", "Laterality", "SeriesDate", "SeriesTime",
    "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence", "ProtocolName",
    "SeriesDescription", "SeriesDescriptionCodeSequence", "OperatorsName",
    "OperatorIdentificationSequence", "ReferencedPerformedProcedureStepSequence",
    "RelatedSeriesSequence", "BodyPartExamined", "PatientPosition", "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries", "RequestAttributesSequence", "AnatomicalOrientationType",
    "TreatmentSessionUID",
    # Clinical Trial Series module
    "ClinicalTrialCoordinatingCenterName", "ClinicalTrialSeriesID",
    "IssuerOfClinicalTrialSeriesID", "ClinicalTrialSeriesDescription",
    # General Equipment module
    "Manufacturer", "InstitutionName", "InstitutionAddress", "StationName",
    "InstitutionalDepartmentName", "InstitutionalDepartmentTypeCodeSequence",
    "ManufacturerModelName", "DeviceSerialNumber", "SoftwareVersions", "GantryID", "UDISequence",
    "DeviceUID", "SpatialResolution", "DateOfLastCalibration", "TimeOfLastCalibration",
    "PixelPaddingValue", "ManufacturerDeviceClassUID",
    # Frame of Reference module
    "FrameOfReferenceUID", "PositionReferenceIndicator",
})

# The grouping elements of spec section 3, pinned so a table edit cannot move them.
GROUPING: dict[str, Level] = {
    "PatientID": "patient", "StudyDate": "study", "AccessionNumber": "study", "StudyID": "study",
    "StudyInstanceUID": "study", "SeriesInstanceUID": "series", "SeriesNumber": "series",
    "Modality": "series",
}

_LEVELS: dict[str, Level] = {
    **{k: "patient" for k in PATIENT}, **{k: "study" for k in STUDY}, **{k: "series" for k in SERIES},
}


def level_of(key: str) -> Level:
    """The level for a document key (a keyword, or 8 hex digits for private/unknown tags)."""
    return _LEVELS.get(key, "instance")

"""FHIR Bundles the tests share: written once, so a test of the reader and a test of the Upload page read the same
document."""

from __future__ import annotations

# one referral (ServiceRequest, its requester by NPI) and one visit (Appointment) at clinic1: lands one intake row
# and one scheduling row; the requester, without a NUCC taxonomy, is quarantined (specialty required)
REFERRAL_AND_VISIT = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {
            "fullUrl": "urn:uuid:0001",
            "resource": {
                "resourceType": "Practitioner",
                "id": "ref1",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
            },
        },
        {
            "resource": {
                "resourceType": "ServiceRequest",
                "id": "sr1",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/p1"},
                "requester": {"reference": "urn:uuid:0001"},
                "locationReference": [{"reference": "Location/clinic1"}],
                "authoredOn": "2024-03-01T09:15:00-06:00",
                "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M17.0"}]}],
            }
        },
        {
            "resource": {
                "resourceType": "Appointment",
                "id": "a1",
                "status": "fulfilled",
                "meta": {"lastUpdated": "2024-03-08T10:05:00-06:00"},
                "appointmentType": {"coding": [{"code": "FOLLOWUP"}]},
                "basedOn": [{"reference": "ServiceRequest/sr1"}],
                "supportingInformation": [{"reference": "EpisodeOfCare/e1"}],
                "start": "2024-03-08T09:00:00-06:00",
                "end": "2024-03-08T09:45:00-06:00",
                "participant": [
                    {"actor": {"reference": "Patient/p1"}},
                    {"actor": {"reference": "Practitioner/t1"}},
                    {"actor": {"reference": "Location/clinic1"}},
                ],
            }
        },
    ],
}

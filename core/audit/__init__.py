"""The audit log: who changed a tenant's configuration, when, and from what to what.

django-auditlog writes the entries (on each save of an audited model). This package says which
models are audited and which of their fields (`tracking`), gives each entry its tenant and the
actor as the rest of the platform names one (`context`), records the operator actions that are
not a save of those models (`records`), and shows the log in the back office, each operator
their own tenant's entries (`admin`).
"""

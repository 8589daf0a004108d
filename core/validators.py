from django.core.validators import RegexValidator

# memberRef travels in URL paths, so it is restricted to URL-safe characters.
MEMBER_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"
member_ref_validator = RegexValidator(
    MEMBER_REF_PATTERN,
    "Use 1 to 128 letters, digits or . _ : @ + - (starting with a letter or digit).",
    code="invalid_member_ref",
)

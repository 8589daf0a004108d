"""Where fulfilment partners may be called: a tenant's operator sets a partner's URL, so
workers refuse URLs that resolve to the platform's own network (private, loopback,
link-local, reserved addresses) unless REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS (development,
where the sandbox partner listens on 127.0.0.1). Checked when the URL is saved and again
before each call, as the name may resolve elsewhere later."""

from django.conf import settings

from core.net import address_is_public, url_addresses
from redemptions.exceptions import PartnerTargetRefused


def partner_target_check(url: str, *, field: str = "baseUrl") -> None:
    try:
        _, host, addresses = url_addresses(url)
    except ValueError as exc:
        raise PartnerTargetRefused(str(exc), field=field) from exc
    if settings.REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS:
        return
    refused = [address for address in addresses if not address_is_public(address)]
    if refused:
        raise PartnerTargetRefused(
            f"The host {host} resolves to a private, loopback, link-local or reserved address ({refused[0]}); "
            "partners are called at public addresses only.",
            field=field,
        )

def camel(name: str) -> str:
    """`member_ref` -> `memberRef`; dotted paths (`items.0.unit_price`) part by part."""
    if "." in name:
        return ".".join(camel(part) for part in name.split("."))
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)

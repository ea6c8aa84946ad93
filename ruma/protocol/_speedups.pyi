from typing import Any

def init(
    frozen_dict: type[dict[str, Any]], frozen_list: type[list[Any]], not_plain: type[BaseException]
) -> None: ...
def freeze_plain(value: object, lo: int, hi: int) -> Any: ...
def pdu_fields(
    pdu: dict[str, Any], max_depth: int
) -> tuple[str, str, str | None, dict[str, Any], int, int, tuple[str, ...], tuple[str, ...]] | None: ...
def redacted_view(
    pdu: dict[str, Any], keep_top: frozenset[str], keep_content: tuple[str, ...] | None
) -> dict[str, Any]: ...
def freeze_pdu(
    pdu: object, lo: int, hi: int, max_depth: int
) -> tuple[
    Any,
    tuple[str, str, str | None, dict[str, Any], int, int, tuple[str, ...], tuple[str, ...]] | None,
]: ...
def signable_view(
    pdu: dict[str, Any],
    keep_top: frozenset[str],
    content_keys: dict[str, tuple[str, ...] | None],
    member_tpi_rule: bool,
) -> dict[str, Any] | None: ...
def without(d: dict[str, Any], drop: frozenset[str]) -> dict[str, Any]: ...

"""The one error the codecs raise."""

from __future__ import annotations

from tessel.errors import InvalidInput


class CodecError(InvalidInput):
    """A frame could not be decoded or encoded; the message names the syntax and the step.

    `fields` carries `transfer_syntax_uid` (and `cause` when a library raised).
    """

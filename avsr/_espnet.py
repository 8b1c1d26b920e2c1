"""Import espnet's attention module once with its stdout silenced.

espnet 202511 ``print``s "Failed to import Flash Attention, using ESPnet default" at import
time when the optional ``flash_attn`` package is absent (always, on CPU machines).  That line
would end up in every log and in the ``avsr`` command's output, so the modules that use espnet
call :func:`quiet_import` first.
"""
import contextlib
import io


def quiet_import() -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        import espnet.nets.pytorch_backend.transformer.attention  # noqa: F401

"""Pure computation: audio in, face parameters and pictures out (see the README's layout).

Importing any engine turns ONNX Runtime's telemetry off for the process: its official
Linux builds otherwise write a device id and an event database under the user's cache dir
(``~/.cache/Microsoft/DeveloperTools/.onnxruntime``) on the first session. The variable is
read when ORT creates its environment, so it must be set before the first session; both
spellings are set (``ORT_DISABLE_TELEMETRY`` in 1.2x–1.3x, ``ORT_TELEMETRY_DISABLED`` later).
"""

import os

for _name in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"):
    os.environ.setdefault(_name, "1")

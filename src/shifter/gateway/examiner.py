"""The site's examiner: a program that vets every image before it is published.

The original ran `examiner <unpacked-image-dir> <image-id>` before converting. This gateway
converts straight from the layers and never has an unpacked tree, so it runs
`examiner <image-file> <image-id>` on the converted image (squashfs, ext4 or cramfs) in the
job's directory, after conversion and before anything is published, for pulls and imports
alike, while the record shows status EXAMINATION. A non-zero exit, no exit within
`ExaminerTimeout` seconds, or a missing program fails the pull with the examiner's last
output lines as the reason, and nothing is published. A re-pull of an image whose file is
already published (examined then) is not examined again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from shifter import proc
from shifter.errors import ConfigError, ShifterError, ToolError, ToolNotFoundError
from shifter.gateway.lifecycle import Lifecycle
from shifter.gateway.records import Status
from shifter.gateway.store_jobs import Job

log = logging.getLogger(__name__)

OUTPUT_LINES = 5


class ExaminationFailed(ShifterError):
    """The examiner refused an image, or could not be run."""


class Examiner:
    """Runs the configured examiner, if any, on converted images."""

    def __init__(
        self, program: str | None, timeout_s: float, lifecycle: Lifecycle, *, where: str
    ) -> None:
        if program is not None and not (os.path.isfile(program) and os.access(program, os.X_OK)):
            # At start-up: a site that configured an examiner must not run without it.
            raise ConfigError(f"the examiner {program} is not an executable file",
                              source=where, key="examiner",
                              hint="install it there, or remove the examiner key")
        self.program = program
        self.timeout_s = timeout_s
        self.lifecycle = lifecycle

    def examine(self, job: Job, image: Path, image_id: str) -> None:
        """Return if the image passes; ExaminationFailed with the reason otherwise."""
        if self.program is None:
            return
        self.lifecycle.progress(job, Status.EXAMINATION, "EXAMINATION")
        argv = [self.program, str(image), image_id]
        try:
            result = proc.run(argv, check=False, timeout=self.timeout_s)
        except ToolNotFoundError as error:
            raise ExaminationFailed(f"the examiner {self.program} is missing",
                                    hint="ask the gateway's admins") from error
        except ToolError as error:
            raise ExaminationFailed(
                f"the examiner did not finish within {self.timeout_s:g} s"
                + _output(error.stderr_tail.encode())) from error
        if result.returncode != 0:
            log.warning("job %s: the examiner refused image %s (exit status %d)", job.pk,
                        image_id, result.returncode)
            raise ExaminationFailed(
                f"the examiner refused the image (exit status {result.returncode})"
                + _output(result.stdout + result.stderr))
        log.info("job %s: the examiner passed image %s", job.pk, image_id)


def _output(raw: bytes) -> str:
    lines = [line.strip() for line in raw.decode(errors="replace").splitlines() if line.strip()]
    return f": {' / '.join(lines[-OUTPUT_LINES:])}" if lines else ""

"""Jobs spread over processes: ``facepriv run --workers N`` and ``--engine ray``.

The files of an input.visual folder, glob or list source become tasks; each worker
process (``local``) or Ray actor (``ray_engine``) builds the pipeline's models once and
runs one file at a time (``worker``). The parent keeps a JSON Lines manifest beside the
outputs (``manifest``), so a job that stopped resumes where it was (``job``).

Engines are found by name in ``engines`` (the one module here that ``facepriv --help``
imports, for the ``--engine`` choices); nothing else here is imported by ``import facepriv``
or ``facepriv --help``.
"""

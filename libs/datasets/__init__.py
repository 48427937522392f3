"""What makes a dataset version, shared by ingest (FAQ sources) and feedback (approved corrections).

Modules: ``records`` (the Q-A row model and the mapping of raw records onto it), ``cleaning``, ``dedup`` (and its
question keys), ``split``, ``options`` (every knob, all hashed into the id), ``pipeline`` (prepare and write a
version, its content-addressed id) and ``store`` (the ``datasets`` row + ``dataset.ready`` staged in the caller's
session). Ingest keeps what is its own: the file and SQL readers, the upload API, its CLI, auth and limits.

Why a library and not "ingest builds versions from a corrections event": a release must commit the new
``datasets`` row, its ``dataset.ready`` outbox row and the flags' ``released`` status in ONE transaction, so a
crash leaves all of it or none. Through an event those would be two services' transactions, and feedback would
need a saga (flags released but no version yet, a redelivered release, a version nobody marks as released). The
corrections are feedback's data (customer wording, reviewed answers): sent in an event they would travel through
the broker, and read from feedback's tables they would be another cross-service read. Preparing a version is pure
computation on rows with no ingest state, so sharing the code keeps one definition of a version (same cleaning,
same ids) without a second hop, and ``kefu feedback release`` still answers at once with the new id or why no
correction survived cleaning.

Nothing here imports from ``services`` or ``kefu``; submodules are not imported eagerly, so ``kefu ingest
--offline`` never loads the database code.
"""

"""Sharing synthetic sets with the rest of the field (docs/format.md, section 9).

* :mod:`.formats`: the import formats, registered by name, with ``auto`` detection, and the
  one import path into the registry (:func:`~.formats.import_source`).
* :mod:`.native`: peers' native files (DC/DSA/DM and DataDAM ``res_*.pt``, MTT's
  ``images_best.pt`` pair, RDED/SRe2L ImageFolders with soft labels, DANCE's ``data_*.pt``).
* :mod:`.hf`: the Hugging Face ``datasets`` layout (Parquet + dataset card), its import, and
  ``push`` to the Hub.
* :mod:`.loader`: ``condensekit.load("name:v3")`` for training scripts.

Nothing here is imported by ``import condensekit``; the Hugging Face libraries are imported
only by the functions that need them (``pip install 'condensekit[hf]'``).
"""

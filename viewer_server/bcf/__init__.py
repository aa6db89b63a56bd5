"""BCF 3.0 round trip: export TwinView topics to a `.bcf` archive and import BCF 3.0 / 2.1 archives.

The mapping, the TwinView extension and the limits are described in docs/BCF.md.
"""

from viewer_server.bcf.archive import BcfError
from viewer_server.bcf.reader import BcfImport, import_bcf
from viewer_server.bcf.schemas import SCHEMA_DIR, validate_archive
from viewer_server.bcf.writer import BcfExport, export_bcf

__all__ = ["SCHEMA_DIR", "BcfError", "BcfExport", "BcfImport", "export_bcf", "import_bcf", "validate_archive"]

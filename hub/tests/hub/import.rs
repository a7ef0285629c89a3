//! import (issue 19).

//! Sandboxes of external parties (being written).

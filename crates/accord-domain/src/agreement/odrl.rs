//! ODRL 2.2 export and import: placeholder, being written.

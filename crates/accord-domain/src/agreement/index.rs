//! The authorization index: placeholder, being written.

//! `hwmond status`: a table of every component.

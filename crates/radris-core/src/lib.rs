//! Shared vocabulary of RADRIS: identifiers parsed once at the edge ([`TenantId`], [`Uid`],
//! [`AeTitle`]), the server configuration ([`config::Config`]) and the events that the archive
//! publishes ([`events::Event`]).
//!
//! This crate does no IO beyond reading a configuration string handed to it.
//!
//! ```
//! use radris_core::{AeTitle, Uid};
//! let ae = AeTitle::parse("STORESCU").unwrap();
//! assert_eq!(ae.as_str(), "STORESCU");
//! assert!(Uid::parse("1.2.840.10008.1.2").is_ok());
//! assert!(Uid::parse("1.2.abc").is_err());
//! ```

pub mod audit;
pub mod config;
pub mod events;
mod ids;
pub mod keys;

pub use ids::{AeTitle, IdError, TenantId, Uid, person_name_key};

#![doc = include_str!("../README.md")]

mod dispatcher;
mod error;
mod guard;
mod payload;
mod schedule;
mod secret;

pub use dispatcher::{Dispatcher, DispatcherConfig};
pub use error::Error;
pub use guard::{is_private, AddressPolicy, GuardedResolver, RefusedAddress, UrlGuard};
pub use payload::{event_type, ArtifactRef, JobEnded, Payload};
pub use schedule::RetrySchedule;
pub use secret::{Secret, SECRET_PREFIX};

//! Reservations: SPC-2 RESERVE / RELEASE and the reservation state of an LU
//! (`reservation`), persistent reservations (`persistent_reservation`),
//! their store (`pr_store`) and TransportIDs (`transport_id`).

pub(crate) mod persistent_reservation;
pub(crate) mod pr_store;
pub(crate) mod reservation;
pub mod shared;
pub(crate) mod transport_id;

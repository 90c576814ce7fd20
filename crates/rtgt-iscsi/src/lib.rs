pub mod pdu;

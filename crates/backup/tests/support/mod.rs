pub mod fault_store;

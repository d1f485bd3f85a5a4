//! The public grid chart (公示牌) of a township or village: agency, supervisors and liaisons with phone numbers and duties.

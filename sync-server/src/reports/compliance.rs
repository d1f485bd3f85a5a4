//! Township compliance (达标): the county's dated acceptance decisions and the share of compliant townships against the year's target.

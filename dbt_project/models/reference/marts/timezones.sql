-- One row per IANA time zone of the airports in the reference data.
select
    tzone,
    count(*) as airport_count,
    min(utc_offset_hours) as utc_offset_hours,
    bool_or(observes_dst) as observes_dst,
    avg(altitude_ft) as mean_altitude_ft,
    max(altitude_ft) as max_altitude_ft
from {{ ref('int_reference__airport_zones') }}
group by tzone

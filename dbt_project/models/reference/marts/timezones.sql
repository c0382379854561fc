-- One row per IANA time zone of the airports in the reference data.
select
    tzone,
    count(*) as airport_count,
    min(tz) as utc_offset_hours,
    bool_or(dst = 'A') as observes_dst,
    avg(alt) as mean_altitude_ft,
    max(alt) as max_altitude_ft
from {{ ref('stg_reference__airports') }}
group by tzone

-- Departures per origin airport and scheduled hour, from the streamed departure events
-- (operations.flight_events): rebuilt whenever a new micro-batch of the stream is published.
select
    origin,
    time_hour,
    count(*) as departures,
    avg(dep_delay) as mean_dep_delay_min
from {{ source('operations', 'flight_events') }}
group by origin, time_hour

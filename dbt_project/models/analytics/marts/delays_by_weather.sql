-- Departure delays by the weather at the origin airport in the scheduled hour.
with joined as (
    select
        flights.dep_delay,
        case
            when observations.precip > 0 and observations.visib < 3 then 'rain, low visibility'
            when observations.precip > 0 then 'rain'
            when observations.visib < 3 then 'low visibility'
            when observations.wind_speed >= 25 then 'strong wind'
            when observations.origin is null then 'no observation'
            else 'clear'
        end as condition
    from {{ source('operations', 'flights') }} as flights
    left join {{ source('weather', 'observations') }} as observations
        on observations.origin = flights.origin
        and observations.time_hour = flights.time_hour
)

select
    condition,
    count(*) as flights,
    avg(dep_delay) as mean_dep_delay_min,
    avg(case when dep_delay is null then null when dep_delay > 15 then 1e0 else 0e0 end) as delayed_share
from joined
group by condition

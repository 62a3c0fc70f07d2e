// A sliding-window rate limiter whose charges can be corrected after the fact. Azure and
// OpenAI admit a request by charging its prompt tokens plus max_tokens against the
// tokens-per-minute limit, then correct the charge to the tokens actually used; the limiters
// in System.Threading.RateLimiting cannot give permits back, so this one implements the
// RateLimiter contract (leases, RetryAfter metadata, statistics) over an exact log of charges
// in the last window. Exact also means the reset times sent to clients are true. The window is
// timed on the monotonic clock (TimeProvider.GetTimestamp), not the wall clock: a wall clock set
// back an hour (by hand, NTP) would otherwise keep every charge for an hour and answer
// Retry-After 3660, and one set forward would forget every charge at once.
using System.Threading.RateLimiting;

namespace Stratus.Platform;

public sealed class SlidingWindowLimiter : RateLimiter
{
    /// <summary>One admitted charge, at a monotonic timestamp; Amount changes when the lease is corrected.</summary>
    internal sealed class Charge(long at, long amount)
    {
        public long At { get; } = at;
        public long Amount { get; set; } = amount;
        public bool Expired { get; set; }
    }

    /// <summary>A granted or refused acquisition. Granted leases can be corrected; disposing
    /// one gives nothing back, because the window, not the lease, bounds the charge.</summary>
    public sealed class Lease : RateLimitLease
    {
        readonly SlidingWindowLimiter? owner;
        readonly Charge? charge;
        readonly TimeSpan? retryAfter;

        internal Lease(SlidingWindowLimiter? owner, Charge? charge, bool acquired, TimeSpan? retryAfter)
        {
            this.owner = owner;
            this.charge = charge;
            IsAcquired = acquired;
            this.retryAfter = retryAfter;
        }

        public override bool IsAcquired { get; }

        public override IEnumerable<string> MetadataNames => retryAfter is null ? [] : [MetadataName.RetryAfter.Name];

        public override bool TryGetMetadata(string metadataName, out object? metadata)
        {
            metadata = metadataName == MetadataName.RetryAfter.Name ? retryAfter : null;
            return metadata is not null;
        }

        /// <summary>Replaces the charge with the amount actually used (0 refunds it).</summary>
        public void Correct(long actual)
        {
            if (owner is not null && charge is not null) owner.Adjust(charge, actual);
        }
    }

    readonly Lock gate = new();
    readonly Queue<Charge> charges = new();
    Charge? newest;
    readonly TimeProvider clock;
    long limit;
    long charged;
    long successes, failures;
    long lastActivity;

    /// <param name="limit">Units per window; 0 means unlimited.</param>
    public SlidingWindowLimiter(long limit, TimeSpan window, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        this.limit = limit;
        Window = window;
        clock = time ?? TimeProvider.System;
        lastActivity = clock.GetTimestamp();
    }

    /// <summary>Changing the limit keeps what was charged in the current window.</summary>
    public long Limit
    {
        get { lock (gate) return limit; }
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            lock (gate) limit = value;
        }
    }

    public TimeSpan Window { get; }

    public override TimeSpan? IdleDuration
    {
        get
        {
            lock (gate)
            {
                var now = clock.GetTimestamp();
                Expire(now);
                return charges.Count > 0 ? null : clock.GetElapsedTime(lastActivity, now);
            }
        }
    }

    /// <summary>Units left in the window now, and how long until everything charged has left it.</summary>
    public (long Remaining, TimeSpan ResetIn) Peek()
    {
        lock (gate)
        {
            var now = clock.GetTimestamp();
            Expire(now);
            var reset = newest is null ? TimeSpan.Zero : LeavesWindowIn(newest, now);
            return (limit == 0 ? long.MaxValue : Math.Max(0, limit - charged), reset);
        }
    }

    public override RateLimiterStatistics? GetStatistics()
    {
        lock (gate)
        {
            Expire(clock.GetTimestamp());
            return new RateLimiterStatistics
            {
                CurrentAvailablePermits = limit == 0 ? long.MaxValue : Math.Max(0, limit - charged),
                CurrentQueuedCount = 0,
                TotalSuccessfulLeases = successes,
                TotalFailedLeases = failures,
            };
        }
    }

    protected override RateLimitLease AttemptAcquireCore(int permitCount) => TryCharge(permitCount);

    /// <summary>No queueing: a caller over its limit is told when to retry, as HTTP 429 does.</summary>
    protected override ValueTask<RateLimitLease> AcquireAsyncCore(int permitCount, CancellationToken cancellationToken) =>
        ValueTask.FromResult<RateLimitLease>(TryCharge(permitCount));

    /// <summary>Charges <paramref name="amount"/> units if the window has room. A refused lease
    /// carries RetryAfter unless the amount exceeds the limit itself (it can never succeed).</summary>
    public Lease TryCharge(long amount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(amount);
        lock (gate)
        {
            var now = clock.GetTimestamp();
            Expire(now);
            lastActivity = now;
            if (limit == 0 || charged + amount <= limit)
            {
                // Kept even at amount 0 so that a correction can still charge it.
                var charge = new Charge(now, amount);
                charges.Enqueue(charge);
                newest = charge;
                charged += amount;
                successes++;
                return new Lease(this, charge, true, null);
            }
            failures++;
            if (amount > limit) return new Lease(null, null, false, null);
            // The earliest moment enough old charges have left the window.
            var freed = 0L;
            foreach (var c in charges)
            {
                freed += c.Amount;
                if (charged - freed + amount <= limit) return new Lease(null, null, false, LeavesWindowIn(c, now));
            }
            return new Lease(null, null, false, Window);
        }
    }

    void Adjust(Charge charge, long actual)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(actual);
        lock (gate)
        {
            Expire(clock.GetTimestamp());
            // A charge that has already left the window no longer counts; correcting it would
            // only distort the current window.
            if (charge.Expired) return;
            charged += actual - charge.Amount;
            charge.Amount = actual;
        }
    }

    /// <summary>How long until <paramref name="charge"/> leaves the window, from the timestamp <paramref name="now"/>.</summary>
    TimeSpan LeavesWindowIn(Charge charge, long now) => Window - clock.GetElapsedTime(charge.At, now);

    void Expire(long now)
    {
        while (charges.Count > 0 && LeavesWindowIn(charges.Peek(), now) <= TimeSpan.Zero)
        {
            var old = charges.Dequeue();
            old.Expired = true;
            charged -= old.Amount;
        }
        if (charges.Count == 0) newest = null;
    }
}

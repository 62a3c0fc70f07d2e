// What the Slurm executor reads from Slurm's own words (scontrol show job --oneliner, sacct
// --parsable2) and what a job then is: no cluster needed (tests/Stratus.Slurm.Tests runs one).
using Stratus.Platform.Jobs;

namespace Stratus.Platform.Tests;

public sealed class SlurmJobRecordTests : IDisposable
{
    readonly string run = Path.Combine(Path.GetTempPath(), $"stratus-slurm-record-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(run)) Directory.Delete(run, recursive: true);
    }

    Job Running(DateTimeOffset? cancelRequestedAt = null) =>
        new("job-0000abcd", Job.TrainKind, new TrainArguments(null, "/data", run, []), SlurmJobExecutor.ExecutorName, "42", JobState.Running,
            null, null, null, null, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow, null, cancelRequestedAt, "cli:test", Path.Combine(run, "job-0000abcd.log"));

    /// <summary>scontrol's line for a job, as Slurm 22.05 prints it (shortened), in the given state.</summary>
    static string Scontrol(string state, string exitCode, string nodeList = "vm", string startTime = "2026-11-27T17:32:55", string reason = "None") =>
        $"JobId=42 JobName=job-0000abcd UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState={state} Reason={reason} " +
        $"Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode={exitCode} RunTime=00:00:01 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-27T17:32:54 " +
        $"EligibleTime=2026-11-27T17:32:54 StartTime={startTime} EndTime=2026-11-27T17:32:56 Partition=main ReqNodeList=(null) ExcNodeList=(null) NodeList={nodeList} " +
        "BatchHost=vm NumNodes=1 NumCPUs=2 NumTasks=2 CPUs/Task=1 Command=/tmp/a b/script WorkDir=/tmp StdOut=/tmp/x.log Power=\n";

    [Fact]
    public void Scontrols_line_gives_the_state_exit_code_signal_start_and_tasks()
    {
        var record = SlurmJobExecutor.ParseScontrol(Scontrol("FAILED", "143:0"))!;
        Assert.Equal(("FAILED", 143, 0, 2), (record.State, record.ExitCode, record.Signal, record.Tasks));
        Assert.Equal(new DateTimeOffset(new DateTime(2026, 11, 27, 17, 32, 55, DateTimeKind.Local)), record.StartTime);
        // ReqNodeList is not NodeList: a job cancelled while it waited has a StartTime but no node.
        Assert.Null(SlurmJobExecutor.ParseScontrol(Scontrol("CANCELLED", "0:0", nodeList: ""))!.StartTime);
        Assert.Null(SlurmJobExecutor.ParseScontrol(Scontrol("PENDING", "0:0", nodeList: "", startTime: "Unknown"))!.StartTime);
        Assert.Null(SlurmJobExecutor.ParseScontrol("slurm_load_jobs error: Invalid job id specified"));
    }

    [Fact]
    public void Scontrols_line_gives_why_a_job_waits_its_partition_time_limit_nodes_and_cpus_per_task()
    {
        var waiting = SlurmJobExecutor.ParseScontrol(Scontrol("PENDING", "0:0", nodeList: "(null)", startTime: "Unknown", reason: "PartitionTimeLimit"))!;
        Assert.Equal(("PartitionTimeLimit", "main", "UNLIMITED", null, 1), (waiting.Reason, waiting.Partition, waiting.TimeLimit, waiting.Nodes, waiting.CpusPerTask));
        var running = SlurmJobExecutor.ParseScontrol(Scontrol("RUNNING", "0:0", nodeList: "node[1-2]"))!;
        Assert.Equal((null, "node[1-2]", "00:00:01"), (running.Reason, running.Nodes, running.Elapsed));
    }

    [Fact]
    public void Each_Slurm_state_is_the_jobs_state_with_its_exit_code_and_a_reason()
    {
        JobObservation? Seen(string state, string exitCode, Job? job = null) => SlurmJobExecutor.Observation(SlurmJobExecutor.ParseScontrol(Scontrol(state, exitCode))!, job ?? Running());
        Assert.Null(Seen("PENDING", "0:0"));
        Assert.Equal(JobObservation.Running(new DateTimeOffset(new DateTime(2026, 11, 27, 17, 32, 55, DateTimeKind.Local))), Seen("RUNNING", "0:0"));
        Assert.Null(Seen("COMPLETING", "0:0")!.End);
        Assert.Equal(new JobEnd(JobState.Succeeded, 0, null), Seen("COMPLETED", "0:0")!.End);
        Assert.Equal(new JobEnd(JobState.Failed, 2, $"train exited with 2; see {run}/job-0000abcd.log"), Seen("FAILED", "2:0")!.End);
        // A signal's end reads as a shell reports it.
        Assert.Equal(137, Seen("FAILED", "0:9")!.End!.ExitCode);
        Assert.Equal(new JobEnd(JobState.Failed, 143, "cancelled before its first checkpoint"), Seen("FAILED", "143:0", Running(DateTimeOffset.UtcNow))!.End);
        Assert.Equal(new JobEnd(JobState.Failed, 143, "Slurm job 42 reached its time limit (TIMEOUT; submit with a longer --time), before its first checkpoint"), Seen("TIMEOUT", "0:15")!.End);
        Assert.Equal(JobState.Failed, Seen("OUT_OF_MEMORY", "0:125")!.End!.State);
        Assert.StartsWith("Slurm job 42 ran out of the memory it was given (OUT_OF_MEMORY)", Seen("OUT_OF_MEMORY", "0:125")!.End!.Reason);
        Assert.StartsWith("Slurm job 42's node failed (NODE_FAIL)", Seen("NODE_FAIL", "0:0")!.End!.Reason);
        Assert.Equal(new JobEnd(JobState.Failed, 0, $"Slurm job 42 ended DEADLINE; see {run}/job-0000abcd.log"), Seen("DEADLINE", "0:0")!.End);
        Directory.CreateDirectory(Path.Combine(run, "checkpoints", "last"));
        Assert.Equal(new JobEnd(JobState.Cancelled, 143, $"Slurm job 42 was cancelled in Slurm (scancel); continue it with `stratus jobs submit --executor slurm --resume {run}` (with the --partition, --time, --ranks and --cpus-per-rank it needs)"), Seen("CANCELLED", "0:15")!.End);
        // A time limit, or a job of higher priority, that ended it after a checkpoint: how to go on, as after a cancel,
        // as a Slurm job again (jobs submit's executor is local unless told).
        Assert.Equal(new JobEnd(JobState.Failed, 143, $"Slurm job 42 reached its time limit (TIMEOUT; submit with a longer --time); continue it with `stratus jobs submit --executor slurm --resume {run}` (with the --partition, --time, --ranks and --cpus-per-rank it needs)"),
            Seen("TIMEOUT", "0:15")!.End);
        Assert.Equal(new JobEnd(JobState.Failed, 143, $"Slurm job 42 was preempted for another job (PREEMPTED); continue it with `stratus jobs submit --executor slurm --resume {run}` (with the --partition, --time, --ranks and --cpus-per-rank it needs)"),
            Seen("PREEMPTED", "0:15")!.End);
        Assert.Equal(new JobEnd(JobState.Cancelled, null, "cancelled before its training started"),
            SlurmJobExecutor.Observation(SlurmJobExecutor.ParseScontrol(Scontrol("CANCELLED", "0:0", nodeList: ""))!, Running())!.End);
    }

    [Fact]
    public void Saccts_line_is_read_as_scontrols_its_canceller_left_out()
    {
        var record = SlurmJobExecutor.ParseSacct("CANCELLED by 0|0:15|2026-11-27T17:32:55\n")!;
        Assert.Equal(("CANCELLED", 0, 15), (record.State, record.ExitCode, record.Signal));
        Assert.NotNull(record.StartTime);
        Assert.Null(SlurmJobExecutor.ParseSacct("CANCELLED by 0|0:0|None\n")!.StartTime);
        Assert.Null(SlurmJobExecutor.ParseSacct(""));
        // Its nodes, partition, time limit and run time, kept with the job as it ends.
        var ended = SlurmJobExecutor.ParseSacct("FAILED|2:0|2026-11-27T17:32:55|00:01:07|node[1-2]|gpu|1-00:00:00\n")!;
        Assert.Equal(("node[1-2]", "gpu", "1-00:00:00", "00:01:07"), (ended.Nodes, ended.Partition, ended.TimeLimit, ended.Elapsed));
        Assert.Null(SlurmJobExecutor.ParseSacct("CANCELLED by 0|0:0|None|00:00:00|None assigned|gpu|30\n")!.Nodes);
    }

    [Fact]
    public void Saccts_error_ends_the_job_only_where_no_accounting_is_kept_and_a_database_it_cannot_reach_leaves_it_as_recorded()
    {
        Assert.Equal((null, "sacct: Slurm accounting storage is disabled"), SlurmJobExecutor.Accounted((1, "", "sacct: error: Slurm accounting storage is disabled\n")));
        Assert.Equal((null, "sacct has no record of it"), SlurmJobExecutor.Accounted((0, "", "")));
        Assert.Equal("COMPLETED", SlurmJobExecutor.Accounted((0, "COMPLETED|0:0|2026-11-27T17:32:55\n", ""))!.Value.Record!.State);
        Assert.Null(SlurmJobExecutor.Accounted((1, "", "sacct: error: There is a problem talking to the database: Connection refused.  Only local cluster communication is available, remove --cluster or contact your admin to resolve the problem.\n")));
        Assert.Null(SlurmJobExecutor.Accounted((1, "", "sacct: error: slurm_persist_conn_open_without_init: failed to open persistent connection to host:localhost:6819: Connection refused\n")));
    }

    [Fact]
    public void Slurms_resources_are_refused_for_another_executor_and_under_one_naming_the_field()
    {
        Assert.Null(SlurmOptions.Requested("local", null, null, null, null));
        Assert.Equal(SlurmOptions.Default, SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, null, null, null, null));
        Assert.Equal(new SlurmOptions("cpu", "30", 2, 4), SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, "cpu", "30", 2, 4));
        foreach (var (requested, param, message) in new (Func<SlurmOptions?>, string, string)[]
        {
            (() => SlurmOptions.Requested("local", null, null, null, 2), "cpus_per_rank", "--partition, --time, --ranks and --cpus-per-rank ask Slurm for the job's resources: give them with --executor slurm"),
            (() => SlurmOptions.Requested("local", "cpu", null, 2, null), "partition", "--partition, --time, --ranks and --cpus-per-rank ask Slurm for the job's resources: give them with --executor slurm"),
            (() => SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, null, null, 0, null), "ranks", "--ranks must be 1 or more, got 0"),
            (() => SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, null, null, null, -1), "cpus_per_rank", "--cpus-per-rank must be 1 or more, got -1"),
            (() => SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, null, "90m", null, null), "time", "--time 90m is not a time limit sbatch takes: give minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED"),
        })
        {
            var refused = Assert.Throws<Stratus.Safety.TrustUserException>(requested);
            Assert.Equal((message, param), (refused.Message, refused.Param));
        }
    }

    /// <summary>Each rank runs as many libtorch threads as it has CPUs, and srun is told them
    /// (Slurm 22.05 does not pass sbatch's --cpus-per-task on to it).</summary>
    /// <summary>A Slurm job has run as long as Slurm says (RunTime, [D-]HH:MM:SS), not from Stratus's
    /// reading it started to its reading it ended; without Slurm's word, the latter.</summary>
    [Fact]
    public void A_Slurm_jobs_duration_is_Slurms_RunTime_where_it_gave_one()
    {
        var started = DateTimeOffset.UtcNow.AddMinutes(-5);
        var ended = Running() with { State = JobState.Succeeded, StartedAt = started, EndedAt = started.AddSeconds(17) };
        Assert.Equal(TimeSpan.FromSeconds(17), ended.Duration(DateTimeOffset.UtcNow));
        Assert.Equal(TimeSpan.FromSeconds(2), (ended with { Slurm = new("42", "COMPLETED", Elapsed: "00:00:02") }).Duration(DateTimeOffset.UtcNow));
        Assert.Equal(new TimeSpan(1, 2, 3, 4), (ended with { Slurm = new("42", "RUNNING", Elapsed: "1-02:03:04") }).Duration(DateTimeOffset.UtcNow));
        Assert.Equal(TimeSpan.FromSeconds(17), (ended with { Slurm = new("42", "COMPLETED", Elapsed: "INVALID") }).Duration(DateTimeOffset.UtcNow));
        Assert.Null((Running() with { StartedAt = null, Slurm = new("42", "PENDING", Elapsed: "00:00:00") }).Duration(DateTimeOffset.UtcNow));
    }

    [Fact]
    public void The_batch_script_gives_each_rank_its_cpus_as_libtorchs_threads()
    {
        var executor = new SlurmJobExecutor(["/opt/stratus"], SlurmOptions.Default);
        var script = executor.BatchScript(Running() with { Resources = new SlurmOptions(null, null, 2, 3) });
        Assert.Contains("\nexport OMP_NUM_THREADS=3\n", script);
        Assert.Contains("\nsrun --mpi=pmix --kill-on-bad-exit=1 --ntasks=2 --cpus-per-task=3 /opt/stratus train ", script);
        Assert.Contains("\nexport OMP_NUM_THREADS=1\n", executor.BatchScript(Running()));
        Assert.Contains("\n/opt/stratus train ", executor.BatchScript(Running()));
    }

    [Theory]
    [InlineData("30")]
    [InlineData("30:00")]
    [InlineData("1:30:00")]
    [InlineData("2-12")]
    [InlineData("2-12:30")]
    [InlineData("2-12:30:00")]
    [InlineData("UNLIMITED")]
    [InlineData("infinite")]
    [InlineData("0")]
    [InlineData("1-99")]
    [InlineData("35791393")]
    [InlineData("24855-3:13")]
    public void Each_of_sbatchs_time_forms_is_taken(string time) => Assert.Equal(time, SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, null, time, null, null)!.Time);

    /// <summary>Slurm turns a limit into seconds in a 32-bit int: beyond 24855-03:13 it wraps to
    /// another limit without a word (sbatch --time=99999999 gives 19734 days, 71582788 UNLIMITED,
    /// 24856-0 2957761 days; on the test cluster, Slurm 22.05).</summary>
    [Theory]
    [InlineData("99999999")]
    [InlineData("35791394")]
    [InlineData("71582788")]
    [InlineData("24856-0")]
    [InlineData("24855-3:14")]
    [InlineData("99999-00:00:00")]
    [InlineData("1:99999999999999999999")]
    public void A_time_longer_than_Slurm_holds_is_refused_naming_the_field(string time)
    {
        var refused = Assert.Throws<Stratus.Safety.TrustUserException>(() => SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, null, time, null, null));
        Assert.Equal(($"--time {time} is longer than Slurm can hold (24855-03:13, about 68 years): give a shorter limit, or UNLIMITED for none", "time"), (refused.Message, refused.Param));
        // The API names its field, as its error's param does, not jobs submit's option.
        Assert.Equal($"'time' {time} is longer than Slurm can hold (24855-03:13, about 68 years): give a shorter limit, or UNLIMITED for none", refused.MessageOn(Stratus.Safety.Surface.Api));
    }

    /// <summary>sbatch refuses an empty partition ("Invalid partition name specified") only once
    /// the job is recorded, which then reads failed.</summary>
    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData("main debug")]
    [InlineData("main\n")]
    public void An_empty_partition_is_refused_naming_the_field(string partition)
    {
        var refused = Assert.Throws<Stratus.Safety.TrustUserException>(() => SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, partition, null, null, null));
        Assert.Equal(($"--partition '{partition}' is not a partition name: give one that sinfo lists, or leave --partition out for the cluster's default", "partition"), (refused.Message, refused.Param));
        Assert.Equal($"'partition' '{partition}' is not a partition name: give one that sinfo lists, or leave 'partition' out for the cluster's default", refused.MessageOn(Stratus.Safety.Surface.Api));
        Assert.Equal("main,debug", SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, "main,debug", null, null, null)!.Partition);
    }

    /// <summary>sbatch reads a line of the script that starts #SBATCH as its option: an actor's
    /// name with a newline in it must not end the comment that names it (on the test cluster such
    /// a name held the job and set its comment).</summary>
    [Theory]
    [InlineData("cli:x\n#SBATCH --hold\n#")]
    [InlineData("cli:x\r\n#SBATCH --uid=0")]
    [InlineData("key-1\u2028#SBATCH --hold")]
    public void An_actor_name_cannot_add_a_line_to_the_batch_script(string actor)
    {
        var executor = new SlurmJobExecutor(["/opt/stratus"], SlurmOptions.Default);
        var lines = executor.BatchScript(Running() with { SubmittedBy = actor }).Split('\n');
        Assert.Equal(["#!/bin/sh", "export OMP_NUM_THREADS=1"], [lines[0], lines[2]]);
        Assert.StartsWith("# Stratus training job job-0000abcd, submitted by ", lines[1]);
        Assert.DoesNotContain(lines, line => line.StartsWith("#SBATCH", StringComparison.Ordinal) || line.Contains('\r') || line.Contains('\u2028'));
        Assert.Contains(@"cli:x\u000a#SBATCH --hold\u000a#", new SlurmJobExecutor(["/opt/stratus"], SlurmOptions.Default).BatchScript(Running() with { SubmittedBy = "cli:x\n#SBATCH --hold\n#" }));
    }

    [Theory]
    [InlineData("90m")]
    [InlineData("2 hours")]
    [InlineData("30\n")]
    [InlineData("1h")]
    [InlineData("")]
    [InlineData("-1:00")]
    [InlineData("1:00:00:00")]
    [InlineData("30\n#SBATCH --uid=0")]
    public void A_time_sbatch_would_refuse_is_refused_before_the_job_is_recorded(string time)
    {
        var refused = Assert.Throws<Stratus.Safety.TrustUserException>(() => SlurmOptions.Requested(SlurmJobExecutor.ExecutorName, null, time, null, null));
        Assert.StartsWith($"--time {time} is not a time limit sbatch takes", refused.Message);
    }

    /// <summary>A cluster whose nodes have fewer CPUs (or less memory) than a rank asks for is the
    /// submission's to change, not a scheduler that cannot be asked (a 503 the caller retries for ever).</summary>
    [Theory]
    [InlineData("Batch job submission failed: Requested node configuration is not available")]
    [InlineData("Batch job submission failed: More processors requested than permitted")]
    public void Sbatch_refusing_more_cpus_than_the_nodes_have_is_the_submissions_fault_saying_what_to_ask_for(string error)
    {
        var refusal = Assert.IsType<Stratus.Safety.TrustUserException>(SlurmJobExecutor.SbatchRefusal(error));
        Assert.Equal($"sbatch refused the job: {error}; ask for fewer --cpus-per-rank (each rank's must fit on one node, with its memory) or fewer --ranks (sinfo -o '%P %D %c %m' lists each partition's nodes, their CPUs and memory)", refusal.Message);
        Assert.IsType<JobExecutorUnavailableException>(SlurmJobExecutor.SbatchRefusal("Batch job submission failed: Unable to contact slurm controller (connect failure)"));
    }

    /// <summary>sbatch that cannot reach the cluster suggests the local executor: the CLI's option
    /// on the CLI, the request's field on the API (a 503 of POST /api/jobs said --executor before),
    /// and so does the reason of the job it recorded failed, as each shows it; the database keeps
    /// the CLI's words.</summary>
    [Fact]
    public void Sbatch_unreachable_names_the_executor_in_each_surfaces_words_and_so_does_the_failed_jobs_reason()
    {
        var refusal = Assert.IsType<JobExecutorUnavailableException>(SlurmJobExecutor.SbatchRefusal("Batch job submission failed: Unable to contact slurm controller (connect failure)"));
        const string Cause = "sbatch refused the job: Batch job submission failed: Unable to contact slurm controller (connect failure); check that Slurm's commands reach the cluster (sinfo; SLURM_CONF names its slurm.conf), or submit with ";
        Assert.Equal((Cause + "--executor local", Cause + "'executor' local"), (refusal.Message, refusal.MessageOn(Stratus.Safety.Surface.Api)));

        var partition = SlurmJobExecutor.SbatchRefusal("Batch job submission failed: Invalid partition name specified");
        var failed = Running() with { State = JobState.Failed, Reason = "could not be started: " + partition.Message };
        Assert.Equal("could not be started: sbatch refused the job: Batch job submission failed: Invalid partition name specified; give a 'partition' and 'time' the cluster takes (sinfo lists its partitions and their time limits), or submit with 'executor' local",
            JobLog.ReasonOn(failed, Stratus.Safety.Surface.Api, []));
        Assert.Equal(failed.Reason, JobLog.ReasonOn(failed, Stratus.Safety.Surface.Cli, []));
    }
}

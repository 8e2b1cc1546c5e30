use super::*;

/// An environment of these variables only.
fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn ownership_is_balanced_deterministic_and_covers_every_parameter() {
    let lens = [100, 7, 50, 50, 3, 100, 1];
    let own = Ownership::balanced(&lens, 2).unwrap();
    // Largest first, each to the lighter rank (ties to rank 0): 100->0, 100->1, 50->0, 50->1,
    // 7->0, then 3 and 1 to rank 1 (150 + 3 < 157).
    assert_eq!(
        (0..lens.len())
            .map(|i| own.owner(i).unwrap())
            .collect::<Vec<_>>(),
        vec![0, 0, 0, 1, 1, 1, 1]
    );
    assert_eq!(own.owned_len(0), 157);
    assert_eq!(own.owned_len(1), 154);
    assert_eq!(own.block_len(), 157);
    assert_eq!(own, Ownership::balanced(&lens, 2).unwrap());
    let one = Ownership::balanced(&lens, 1).unwrap();
    assert!(one.mask(0).iter().all(|&m| m));
    // More ranks than parameters: the extra ranks own nothing.
    let many = Ownership::balanced(&[5, 5], 4).unwrap();
    assert_eq!(many.owned(2), Vec::<usize>::new());
    assert_eq!(many.block_len(), 5);
    assert!(Ownership::balanced(&lens, 0).is_err());
    // Replicated parameters have no owner: every rank updates them.
    let part =
        Ownership::balanced_except(&lens, &[false, true, false, false, true, false, true], 2)
            .unwrap();
    assert_eq!(part.replicated(), vec![1, 4, 6]);
    assert_eq!(part.owner(1), None);
    assert_eq!(
        part.mask(1),
        vec![false, true, false, true, true, true, true]
    );
    assert_eq!((part.owned(0), part.owned(1)), (vec![0, 2], vec![3, 5]));
    assert!(Ownership::balanced_except(&lens, &[true], 2).is_err());
    for p in [ShardPolicy::All, ShardPolicy::Matrices, ShardPolicy::None] {
        assert_eq!(ShardPolicy::parse(p.name()).unwrap(), p);
    }
    assert!(ShardPolicy::parse("zero3").is_err());
}

#[test]
fn launch_variables_are_read_in_order_and_slurm_only_under_pmix() {
    assert_eq!(launched_world_size(&env(&[])), None);
    assert_eq!(
        launched_world_size(&env(&[("WORLD_SIZE", "8"), ("OMPI_COMM_WORLD_SIZE", "2")])),
        Some((2, "OMPI_COMM_WORLD_SIZE"))
    );
    assert_eq!(
        launched_world_size(&env(&[("PMI_SIZE", "4")])),
        Some((4, "PMI_SIZE"))
    );
    // An sbatch script's own process: Slurm's count alone is not a launch.
    assert_eq!(
        launched_world_size(&env(&[("SLURM_STEP_NUM_TASKS", "16")])),
        None
    );
    assert_eq!(
        launched_world_size(&env(&[("SLURM_STEP_NUM_TASKS", "16"), ("PMIX_RANK", "3")])),
        Some((16, "SLURM_STEP_NUM_TASKS"))
    );
    assert!(launch_hint(2).contains("mpirun -np 2"));
}

/// A fresh run into a folder of an earlier run moves that run whole beside it (nothing
/// truncated, nothing mixed); an empty or new folder is used as it is; a folder another
/// process writes is refused with nothing moved.
#[test]
fn a_fresh_run_moves_an_earlier_run_aside_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("base_checkpoints/d2");
    // New folder: nothing to move.
    let fresh = FolderLock::acquire_fresh(&sub).unwrap();
    assert!(fresh.earlier.is_none());
    drop(fresh);
    // Only the lock file (a run that wrote nothing): nothing to move.
    let fresh = FolderLock::acquire_fresh(&sub).unwrap();
    assert!(fresh.earlier.is_none());
    drop(fresh);
    std::fs::write(sub.join("metrics.jsonl"), "{\"step\": 1}\n{\"step\": 2}\n").unwrap();
    std::fs::write(sub.join("meta_000002.json"), "{}").unwrap();
    // Held by another writer: refused, nothing moved.
    let held = FolderLock::acquire(&sub).unwrap();
    assert!(matches!(
        FolderLock::acquire_fresh(&sub).unwrap_err(),
        CoreError::Busy { .. }
    ));
    assert!(sub.join("meta_000002.json").exists());
    drop(held);
    let fresh = FolderLock::acquire_fresh(&sub).unwrap();
    let to = fresh.earlier.clone().unwrap();
    let name = to.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("d2.earlier-20"), "{name}");
    assert_eq!(to.parent(), sub.parent());
    assert_eq!(
        std::fs::read_to_string(to.join("metrics.jsonl")).unwrap(),
        "{\"step\": 1}\n{\"step\": 2}\n"
    );
    assert!(to.join("meta_000002.json").exists());
    let left: Vec<_> = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from(".lock")]);
    // The lock is on the new folder.
    assert!(matches!(
        FolderLock::acquire(&sub).unwrap_err(),
        CoreError::Busy { .. }
    ));
    drop(fresh);
    // A second earlier run in the same second gets its own name.
    std::fs::write(sub.join("meta_000001.json"), "{}").unwrap();
    let again = FolderLock::acquire_fresh(&sub).unwrap();
    let to2 = again.earlier.clone().unwrap();
    assert_ne!(to2, to);
    assert!(to2.join("meta_000001.json").exists());
    assert!(to.join("meta_000002.json").exists());
}

#[test]
fn a_folder_lock_refuses_a_second_writer_and_is_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("base_checkpoints/d2");
    let held = FolderLock::acquire(&sub).unwrap();
    let err = FolderLock::acquire(&sub).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CoreError::Busy { .. }), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert!(msg.contains(".lock"), "{msg}");
    drop(held);
    FolderLock::acquire(&sub).unwrap();
}

#[test]
fn one_process_sync_keeps_gradients_and_parameters() {
    let device = crate::Device::cpu().unwrap();
    let a = crate::Tensor::from_f32(&device, &[1.0, 2.0, 3.0], &[3], crate::DType::F32).unwrap();
    let b = crate::Tensor::from_f32(&device, &[4.0, 5.0], &[1, 2], crate::DType::F32).unwrap();
    let params = vec![a.clone(), b.clone()];
    let own = Ownership::balanced(&[3, 2], 1).unwrap();
    let mut grads = crate::Grads::default();
    grads
        .accumulate(
            a.id(),
            crate::Tensor::from_f32(&device, &[0.5, -1.0, 2.0], &[3], crate::DType::F32).unwrap(),
        )
        .unwrap();
    // b has no gradient here: it counts as zeros. Both paths: in the runtime's memory (the
    // CPU's) and through host copies (elsewhere).
    let mut copied = crate::Grads::default();
    let ga = crate::Tensor::from_f32(&device, &[0.5, -1.0, 2.0], &[3], crate::DType::F32).unwrap();
    copied.accumulate(a.id(), ga).unwrap();
    sync::reduce_scatter_grads(&SingleProcess, &own, &params, &mut grads).unwrap();
    sync::reduce_by_copy(&SingleProcess, &own, &params, &mut copied).unwrap();
    for g in [&grads, &copied] {
        assert_eq!(
            g.get(&a).unwrap().to_vec_f32().unwrap(),
            vec![0.5, -1.0, 2.0]
        );
        assert_eq!(g.get(&b).unwrap().to_vec_f32().unwrap(), vec![0.0, 0.0]);
    }
    sync::all_gather_params(&SingleProcess, &own, &params).unwrap();
    sync::gather_by_copy(&SingleProcess, &own, &params).unwrap();
    assert_eq!(b.to_vec_f32().unwrap(), vec![4.0, 5.0]);
    // The reduce's receive buffer: at the root only, of the send's length.
    let mut r = [0.0f32; 2];
    SingleProcess
        .reduce_f32(&[1.0, 2.0], Some(&mut r), 0)
        .unwrap();
    assert_eq!(r, [1.0, 2.0]);
    assert!(SingleProcess.reduce_f32(&[1.0], Some(&mut r), 0).is_err());
    assert!(SingleProcess.reduce_f32(&[1.0], None, 0).is_err());
    assert!(SingleProcess.reduce_f32(&[1.0], None, 1).is_err());
    b.write_f32(&[7.0, -8.0]).unwrap();
    assert_eq!(b.to_vec_f32().unwrap(), vec![7.0, -8.0]);
    assert!(b.write_f32(&[1.0]).is_err());
    let norm = sync::grad_norm(&SingleProcess, Some(&own), &params, &grads).unwrap();
    assert!((norm - 5.25f64.sqrt()).abs() < 1e-6, "{norm}");
}

#[test]
fn a_launch_of_several_ranks_is_refused_without_mpi_and_joined_with_it() {
    for with_mpi in [false, true] {
        assert_eq!(launch(&env(&[]), with_mpi).unwrap(), Launch::Single);
        assert_eq!(
            launch(&env(&[("WORLD_SIZE", "1")]), with_mpi).unwrap(),
            Launch::Single
        );
        // torchrun's world is never joined: its ranks would train alone.
        let e = launch(&env(&[("WORLD_SIZE", "8")]), with_mpi)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("WORLD_SIZE=8") && e.contains("mpirun -np 8"),
            "{e}"
        );
    }
    for (var, n) in [("OMPI_COMM_WORLD_SIZE", "2"), ("PMI_SIZE", "4")] {
        let vars: &'static [(&'static str, &'static str)] = Box::leak(Box::new([(var, n)]));
        let e = launch(&env(vars), false).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{var}={n}"))
                && e.contains("built without MPI")
                && e.contains("--features mpi"),
            "{e}"
        );
        assert_eq!(
            launch(&env(vars), true).unwrap(),
            Launch::Mpi(n.parse().unwrap())
        );
    }
    // mpirun -np 1: an MPI world of one when the build has MPI, a plain process otherwise.
    assert_eq!(
        launch(&env(&[("OMPI_COMM_WORLD_SIZE", "1")]), true).unwrap(),
        Launch::Mpi(1)
    );
    assert_eq!(
        launch(&env(&[("OMPI_COMM_WORLD_SIZE", "1")]), false).unwrap(),
        Launch::Single
    );
}

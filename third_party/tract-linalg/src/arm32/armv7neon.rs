use crate::pack::PackedFormat;

MMMExternKernel!(arm;armv7neon_mmm_f32_8x4_cortexa7 <f32>( 8, 4)@(16, 4) isa(ArmNeon));
MMMExternKernel!(arm;armv7neon_mmm_f32_8x4_cortexa9 <f32>( 8, 4)@(16, 4) isa(ArmNeon));
MMMExternKernel!(arm;armv7neon_mmm_f32_8x4_generic  <f32>( 8, 4)@(16, 4) isa(ArmNeon));
MMMExternKernel!(arm;armv7neon_mmm_f32_8x6_cortexa7 <f32>( 8, 6)@(16, 4) isa(ArmNeon));
MMMExternKernel!(arm;armv7neon_mmm_f32_8x6_cortexa9 <f32>( 8, 6)@(16, 4) isa(ArmNeon));
MMMExternKernel!(arm;armv7neon_mmm_f32_8x6_generic  <f32>( 8, 6)@(16, 4) isa(ArmNeon));
MMMExternKernel!(arm;armv7neon_mmm_f32_8x1_generic  <f32>( 8, 1)@(16, 4) isa(ArmNeon));
MMMExternKernel!(arm;armv7neon_mmm_f32_32x1_cortexa7<f32>(32, 1)@(16, 4) isa(ArmNeon));
MMMExternKernel!(arm;armv7neon_mmm_f32_32x1_cortexa9<f32>(32, 1)@(16, 4) isa(ArmNeon));
MMMExternKernel!(arm;armv7neon_mmm_f32_32x1_generic <f32>(32, 1)@(16, 4) isa(ArmNeon));

MMMExternKernel!(arm;armv7neon_mmm_i32_8x4<i32>(8, 4)@(32, 4) isa(ArmNeon)
  packing[1] = i8i8 => |k| k.with_packing(PackedFormat::new(DatumType::I8, 8, 32), PackedFormat::new(DatumType::I8, 4, 32));

  store(i8)
);

// clip-edge patch: VMULL.S8 + VMLAL.S8 + VPADAL.S16, 16 K per register pair; exact only when
// one operand has no -128, so selection offers it only then (see the aarch64 SADALP kernel).
MMMExternKernel!(arm;armv7neon_mmm_i32_4x2_sadalp<i32>(4, 2)@(16, 8) isa(ArmNeon)
  packing[1] = i8i8 => |k| k
      .with_packing(crate::pack::PackedI8K4::with_k_group(4, 16), crate::pack::PackedI8K4::with_k_group(2, 16))
      .needing_operand_without_i8_min();

  store(i8)
);

MMMExternKernel!(arm;armv7neon_mmm_i32_32x1<i32>(32, 1)@(32, 4) isa(ArmNeon)
  packing[1] = i8i8 => |k| k.with_packing(PackedFormat::new(DatumType::I8, 32, 32), PackedFormat::new(DatumType::I8, 1, 4));

  store(i8)
);

routine_ew_extern!(arm; Sigmoid, f32, armv7neon_sigmoid_f32_4n, 4, 4, isa(ArmNeon));
routine_ew_extern!(arm; Silu, f32, armv7neon_silu_f32_4n, 4, 4, isa(ArmNeon));
routine_ew_extern!(arm; Tanh, f32, armv7neon_tanh_f32_4n, 4, 4, isa(ArmNeon));

// clip-edge patch: the VPADAL kernel at the edges of its i16 lanes and the selection rule,
// as `sadalp_range` for aarch64.
#[cfg(all(test, target_arch = "arm"))]
mod sadalp_range {
    use super::armv7neon_mmm_i32_4x2_sadalp as sadalp;
    use crate::frame::mmm::tests::packed_packed::PackedPackedProblem;
    use crate::isa::{Arch, Isa, IsaSet};
    use crate::mmm::{MatMatMul, MmmDispatch, Query};
    use tract_data::prelude::*;

    fn run(a: Vec<f32>, b: Vec<f32>) -> TractResult<()> {
        PackedPackedProblem::kernel(&*sadalp, 1, a, b).check()
    }

    #[test]
    fn largest_sums() -> TractResult<()> {
        let k = 768;
        run(vec![127.0; 4 * k], vec![-128.0; 2 * k])?;
        run(vec![-127.0; 4 * k], vec![-128.0; 2 * k])?;
        run(vec![-127.0; 4 * k], vec![127.0; 2 * k])
    }

    #[test]
    fn full_range() -> TractResult<()> {
        for k in [1, 15, 16, 17, 100, 768] {
            let a = (0..4 * k).map(|i| ((i * 37 + 11) % 255) as f32 - 127.0).collect::<Vec<_>>();
            let b = (0..2 * k).map(|i| ((i * 53 + 7) % 256) as f32 - 128.0).collect::<Vec<_>>();
            run(a, b)?;
        }
        Ok(())
    }

    #[test]
    fn both_operands_at_min_wrap() {
        assert!(run(vec![-128.0; 4 * 16], vec![-128.0; 2 * 16]).is_err());
    }

    #[test]
    fn selection_needs_operand_without_min() {
        let neon = IsaSet::of_arch(Arch::Arm).with(Isa::ArmNeon);
        let plain = Query::plain(DatumType::I32, Some(64), Some(768), Some(50));
        let allowed = Query { operand_without_i8_min: true, ..plain.clone() };
        let pick = |q: &Query| MmmDispatch::for_isa(neon).pick(q).unwrap().0.name().to_string();
        assert!(sadalp.needs_operand_without_i8_min());
        assert_eq!(pick(&allowed), sadalp.name());
        assert_eq!(pick(&plain), super::armv7neon_mmm_i32_8x4.name());
    }
}
